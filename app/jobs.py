"""Background jobs: the Job table is the source of truth, Dash's manager only runs them.

``run_job`` wraps any long ``ml``/service function: it records the job (queued ->
running -> done | failed | cancelled, with the error text), waits for the single compute
lock, mirrors progress into the row and into the panel, and polls a cancel flag stored in
the row. A job whose process died (killed by Dash's cancel, a server restart) is found by
``recover_stale`` and marked failed/cancelled, so a reload always shows the truth.

Fork trap (measured): a process forked after its parent ran a multi-threaded torch op
hangs in its first parallel op unless it runs torch with one thread; ``run_job`` therefore
sets ``torch.set_num_threads(1)`` in forked workers (Dash diskcache, Celery prefork) and
``config.torch_threads`` otherwise.

A job process must not outlive its server (after ``kill -9`` of the server a forked job kept
the port and stayed "running"): it is forked with no SQLite connection open (``app.db``), drops
inherited sockets and watches its parent; once the server is gone its cancel check is true, the
job fails with SERVER_STOPPED, and after STOP_GRACE_S the process exits anyway. Not
``PR_SET_PDEATHSIG``: it fires when the forking *thread* ends, and Dash forks from a request thread.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Callable

from app.compute import compute_lock, configure_torch_threads
from app.config import Config
from app.db import service_context, session_scope
from app.errors import user_message
from app.models import FINISHED_STATES, JOB_KINDS, Job, JobState, dumps, loads, utcnow
from ml.progress import Cancelled

ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)
LIVE_KIND = "live"
PROGRESS_EVERY_S = 0.5
CANCEL_POLL_S = 1.0
WATCH_POLL_S = 0.5               # a job process checks this often that its server lives
STOP_GRACE_S = 10.0              # then waits this long for the job to stop at a cancel check
SERVER_STOPPED = "interrupted: the server stopped while this job ran; run it again (saved labels and versions are kept)"
PROCESS_GONE = "interrupted: the process running this job stopped (killed, or the server stopped); run it again"
BEAT_EVERY_S = 20.0          # a running job's row says it is alive this often ...
REMOTE_STALE_S = 120.0       # ... and a job on another machine silent this long is taken for dead
SERVER_GONE = threading.Event()  # set in a job process whose server died
_CURRENT: dict = {}              # the job this process runs: {"config", "job_id"}
log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, dict], None]


@dataclass
class JobOutcome:
    job_id: int
    status: str                    # a JobState: DONE | FAILED | CANCELLED
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == JobState.DONE


# --- the job process's ties to its server (app.job_manager forks it) ------------------------------
def forget_current_job() -> None:
    """In a forked job process: a job the server ran in-process is not this process's."""
    _CURRENT.clear()


def watch_server(server_pid: int) -> threading.Thread:
    """Daemon thread: once the parent ``server_pid`` is gone, stop the job (cancel check, then exit)."""
    def watch() -> None:
        while os.getppid() == server_pid:
            time.sleep(WATCH_POLL_S)
        SERVER_GONE.set()
        log.warning("server %s is gone: stopping job %s", server_pid, _CURRENT.get("job_id"))
        time.sleep(STOP_GRACE_S)                       # the job stops at its next cancel check
        threading.Timer(5.0, os._exit, (3,)).start()   # even when the database does not answer
        with contextlib.suppress(Exception):
            mark_interrupted(**_CURRENT)
        os._exit(3)
    t = threading.Thread(target=watch, name=f"watch-server-{server_pid}", daemon=True)
    return t.start() or t


def mark_interrupted(config: Config, job_id: int, reason: str = SERVER_STOPPED) -> None:
    """Fail a job that is still queued/running with ``reason`` (one that ended keeps its outcome)."""
    with session_scope(config) as s:
        j = s.get(Job, job_id)
        if j is not None and j.status in ACTIVE_STATES:
            j.status, j.error, j.finished = JobState.FAILED, reason, utcnow()


# --- records ---------------------------------------------------------------------------------------
def job_dict(j: Job) -> dict:
    return {
        "id": j.id, "kind": j.kind, "project_id": j.project_id, "status": j.status,
        "progress": j.progress, "total": j.total, "info": loads(j.info_json, {}), "error": j.error,
        "result": loads(j.result_json), "params": loads(j.params_json, {}),
        "cancel_requested": bool(j.cancel_requested),
        "created": j.created.isoformat(timespec="seconds") if j.created else None,
        "started": j.started.isoformat(timespec="seconds") if j.started else None,
        "finished": j.finished.isoformat(timespec="seconds") if j.finished else None,
    }


def create_job(config: Config, kind: str, project_id: int | None, params: dict | None = None) -> int:
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}; use one of {JOB_KINDS}")
    with session_scope(config) as s:
        j = Job(kind=kind, project_id=project_id, status=JobState.QUEUED, params_json=dumps(params),
                pid=os.getpid(), host=socket.gethostname())
        s.add(j)
        s.flush()
        return j.id


def get_job(config: Config, job_id: int) -> dict | None:
    with session_scope(config) as s:
        j = s.get(Job, job_id)
        return job_dict(j) if j else None


def list_jobs(config: Config, project_id: int | None = None, kind: str | None = None, limit: int = 20,
              quiet_kinds: tuple[str, ...] = ()) -> list[dict]:
    """Most recent first; stale running jobs are reconciled before listing. Finished (done or
    cancelled) jobs of ``quiet_kinds`` are left out: live mode runs one per stroke."""
    recover_stale(config)
    with session_scope(config) as s:
        q = s.query(Job)
        if project_id is not None:
            q = q.filter(Job.project_id == project_id)
        if kind is not None:
            q = q.filter(Job.kind == kind)
        if quiet_kinds:
            q = q.filter(~(Job.kind.in_(quiet_kinds) & Job.status.in_((JobState.DONE, JobState.CANCELLED))))
        return [job_dict(j) for j in q.order_by(Job.id.desc()).limit(limit)]


def latest_job(config: Config, kind: str, project_id: int | None) -> dict | None:
    rows = list_jobs(config, project_id=project_id, kind=kind, limit=1)
    return rows[0] if rows else None


def set_state(config: Config, job_id: int, status: str, *, error: str | None = None, result: Any = None) -> None:
    with session_scope(config) as s:
        j = s.get(Job, job_id)
        if j is None:
            return
        j.status = status
        if status == JobState.RUNNING:
            j.started = j.beat = utcnow()
            j.pid = os.getpid()
            j.host = socket.gethostname()
        if status in FINISHED_STATES:
            j.finished = utcnow()
        if error is not None:
            j.error = error
        if result is not None:
            j.result_json = dumps(result)


def update_progress(config: Config, job_id: int, done: int, total: int, info: dict | None = None) -> None:
    with session_scope(config) as s:
        j = s.get(Job, job_id)
        if j is not None:
            j.progress, j.total = int(done), int(total)
            if info:
                j.info_json = dumps(info)


def request_cancel(config: Config, job_id: int | None = None, *, kind: str | None = None,
                   project_id: int | None = None) -> int:
    """Flag one job, or every active job of a kind/project, to stop; returns how many were flagged."""
    with session_scope(config) as s:
        q = s.query(Job).filter(Job.status.in_(ACTIVE_STATES))
        if job_id is not None:
            q = q.filter(Job.id == job_id)
        if kind is not None:
            q = q.filter(Job.kind == kind)
        if project_id is not None:
            q = q.filter(Job.project_id == project_id)
        rows = q.all()
        for j in rows:
            j.cancel_requested = True
    recover_stale(config)
    return len(rows)


def cancel_requested(config: Config, job_id: int) -> bool:
    with session_scope(config) as s:
        j = s.get(Job, job_id)
        return bool(j and j.cancel_requested)


def _process_alive(pid: int | None, since) -> bool:
    if not pid:
        return False
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        # a reused pid belongs to a process that started after the job was created
        return since is None or p.create_time() <= since.replace(tzinfo=timezone.utc).timestamp() + 1.0
    except psutil.Error:
        return False


def _alive(j: Job, host: str, now) -> bool:
    """This host's jobs: by their process; another machine's (a remote worker): by their heartbeat."""
    if j.host in (None, host):
        return _process_alive(j.pid, j.started or j.created)
    last = j.beat or j.started or j.created
    return last is not None and (now - last).total_seconds() < REMOTE_STALE_S


def recover_stale(config: Config, reason: str = PROCESS_GONE) -> int:
    """Fail active jobs whose process is gone, with ``reason``; cancel them when asked."""
    host, now = socket.gethostname(), utcnow()
    n = 0
    with session_scope(config) as s:
        for j in s.query(Job).filter(Job.status.in_(ACTIVE_STATES)).all():
            if _alive(j, host, now):
                continue
            why = reason if j.host in (None, host) else (
                f"interrupted: the worker on {j.host} stopped answering (no sign of life for {REMOTE_STALE_S:.0f} s);"
                " run it again")
            if j.cancel_requested:
                j.status = JobState.CANCELLED
            elif j.kind == LIVE_KIND:     # Dash stops a live update's process when a newer one starts
                j.status = JobState.CANCELLED
                j.error = j.error or "stopped: a newer live update replaced it (or its process ended)"
            else:
                j.status = JobState.FAILED
                j.error = j.error or why
            j.finished = utcnow()
            n += 1
    return n


# --- the wrapper every panel uses ------------------------------------------------------------------
class Heartbeat:
    """Stamps a running job's row every ``BEAT_EVERY_S`` so another machine can tell it lives."""

    def __init__(self, config: Config, job_id: int, every_s: float = BEAT_EVERY_S):
        self.config, self.job_id, self.every_s = config, job_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                with session_scope(self.config) as s:
                    j = s.get(Job, self.job_id)
                    if j is not None:
                        j.beat = utcnow()
            except Exception:  # noqa: BLE001 - a busy database must not kill the job; the next beat retries
                log.warning("heartbeat of job %s not written", self.job_id, exc_info=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()



class _Reporter:
    """progress(done, total, info) -> Job row (throttled) and the panel's own callback."""

    def __init__(self, config: Config, job_id: int, set_progress: ProgressFn | None):
        self.config, self.job_id, self.set_progress = config, job_id, set_progress
        self._last = 0.0

    def __call__(self, done: int, total: int, info: dict | None = None) -> None:
        now = time.monotonic()
        if done < total and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        update_progress(self.config, self.job_id, done, total, info or {})
        if self.set_progress is not None:
            self.set_progress(int(done), int(total), dict(info or {}))


class _CancelFlag:
    def __init__(self, config: Config, job_id: int, extra: Callable[[], bool] | None):
        self.config, self.job_id, self.extra = config, job_id, extra
        self._last, self._value = 0.0, False

    def __call__(self) -> bool:
        if self._value or SERVER_GONE.is_set():
            return True
        if self.extra is not None and self.extra():
            self._value = True
            return True
        now = time.monotonic()
        if now - self._last >= CANCEL_POLL_S:
            self._last = now
            self._value = cancel_requested(self.config, self.job_id)
        return self._value


def run_job(config: Config, kind: str, project_id: int | None, fn: Callable[..., Any],
            set_progress: ProgressFn | None = None, *, params: dict | None = None, compute: bool = True,
            cancel: Callable[[], bool] | None = None, job_id: int | None = None, **kwargs) -> JobOutcome:
    """Run ``fn(progress=..., cancel=..., **kwargs)`` as a recorded job; never raises for job errors.

    ``fn`` returns a JSON-able result (stored in the row). ``set_progress(done, total, info)``
    is the panel's adapter to Dash's progress output. ``compute=True`` holds the compute lock.
    Pass ``job_id`` to run a row created earlier with ``create_job`` (e.g. to show it queued).
    The job's database work shares one session (``app.db.ServiceContext``).
    """
    with service_context(config):
        return _run_recorded(config, kind, project_id, fn, set_progress, params, compute, cancel, job_id, kwargs)


def _run_recorded(config: Config, kind: str, project_id: int | None, fn: Callable[..., Any],
                  set_progress: ProgressFn | None, params: dict | None, compute: bool,
                  cancel: Callable[[], bool] | None, job_id: int | None, kwargs: dict) -> JobOutcome:
    if job_id is None:
        job_id = create_job(config, kind, project_id, params)
    progress = _Reporter(config, job_id, set_progress)
    cancel_fn = _CancelFlag(config, job_id, cancel)
    _CURRENT.update(config=config, job_id=job_id)
    try:
        configure_torch_threads(config)
        lock = compute_lock(config, cancel_fn) if compute else contextlib.nullcontext()
        with lock, Heartbeat(config, job_id):
            set_state(config, job_id, JobState.RUNNING)
            result = fn(progress=progress, cancel=cancel_fn, **kwargs)
    except Cancelled:   # asked by the user, or the server is gone (then it is a failure with the reason)
        status, error = (JobState.FAILED, SERVER_STOPPED) if SERVER_GONE.is_set() else (JobState.CANCELLED, None)
        set_state(config, job_id, status, error=error)
        return JobOutcome(job_id, status, error=error)
    except Exception as exc:  # every failure is recorded with its message, never lost
        msg = user_message(exc)
        set_state(config, job_id, JobState.FAILED, error=msg)
        return JobOutcome(job_id, JobState.FAILED, error=msg)
    set_state(config, job_id, JobState.DONE, result=result)
    return JobOutcome(job_id, JobState.DONE, result=result)
