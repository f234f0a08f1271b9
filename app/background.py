"""Jobs started outside any page request: pre-training a new volume, and REST API jobs (segment, train).

Dash's background callbacks belong to a browser tab: a second trigger of the same callback
terminates the first job, and nothing can start one without a tab (the demo volume at
start-up). A detached job is therefore launched here instead: :func:`launch` records the Job
row (queued) and starts the job's runner

- diskcache backend: ``python -m app.background JOB_ID``, a fresh interpreter (no fork after
  torch) in the server's process group, so stopping the server stops it too (and a watch on its
  parent stops it when the server is killed with -9); SIGTERM/SIGINT
  become a cooperative cancel, so the job saves what it has before it exits. Its output goes to
  ``Workspace.job_log_path``.
- celery backend: the task :data:`TASK_NAME` on the worker (registered in ``app.worker``).
  A worker with ``--concurrency=1`` runs nothing else meanwhile: give it 2 so a user's job can
  start beside a long detached one (which then yields the compute lock to it).

After that the row is the whole interface, as for every job (``app.jobs``): progress, the
cancel flag (the jobs list's Cancel button) and the outcome.
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable

from app import jobs
from app.config import REPO_ROOT, Config
from app.db import session_scope
from app.models import Job, JobState
from app.workspace import Workspace

log = logging.getLogger(__name__)

#: job kind -> "module:function" called as ``function(config, job_dict, cancel=...) -> JobOutcome``
RUNNERS: dict[str, str] = {"pretrain": "app.services.pretraining:run_detached",
                           "segment": "app.services.detached:segment", "train": "app.services.detached:train"}
TASK_NAME = "activeseg.detached_job"
CHUNK_TASK = "activeseg.predict_chunk"    # one z-chunk of a whole-volume prediction (app.services.chunks)
PREVIEW_TASK = "activeseg.preview"        # one slice preview (app.services.previews)
PREVIEW_WAIT_S = 30.0
_celery_apps: dict[str, Any] = {}


def launch(config: Config, kind: str, project_id: int | None, params: dict | None = None) -> int:
    """Record a queued job of ``kind`` and start its runner in the background; returns the job id."""
    if kind not in RUNNERS:
        raise ValueError(f"no detached runner for job kind {kind!r}; known: {sorted(RUNNERS)}")
    job_id = jobs.create_job(config, kind, project_id, params)
    try:
        if config.job_backend == "celery":
            _celery(config).send_task(TASK_NAME, args=[job_id])
        else:
            _spawn(config, job_id)
    except Exception as exc:  # noqa: BLE001 - the row tells the user; the caller goes on
        jobs.set_state(config, job_id, JobState.FAILED, error=f"could not start the job: {exc}")
    return job_id


def _spawn(config: Config, job_id: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(config.to_env())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(Workspace(config.workspace).job_log_path(job_id), "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.background", str(job_id)], cwd=str(REPO_ROOT),
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    with session_scope(config) as s:   # until the child marks it running, its pid tells whether it lives
        row = s.get(Job, job_id)
        if row is not None and row.status == JobState.QUEUED:
            row.pid = proc.pid
    threading.Thread(target=proc.wait, name=f"reap-job-{job_id}", daemon=True).start()


def _celery(config: Config):
    app = _celery_apps.get(config.redis_url)
    if app is None:
        from app.celery_app import make_celery

        app = _celery_apps[config.redis_url] = make_celery(config)
    return app


def send_chunks(config: Config, tasks: list[dict]) -> None:
    """Queue ``CHUNK_TASK`` for each chunk (any worker that is up takes one; ``app.services.chunks``)."""
    app = _celery(config)
    for kwargs in tasks:
        app.send_task(CHUNK_TASK, kwargs=kwargs)


def preview_in_worker(config: Config, volume_id: int, model_id: int, z: int) -> bool:
    """Have a worker make a slice preview and wait for it (True once it is stored)."""
    try:
        result = _celery(config).send_task(PREVIEW_TASK, kwargs={"volume_id": int(volume_id), "model_id": int(model_id),
                                                                 "z": int(z)})
        return result.get(timeout=PREVIEW_WAIT_S) == "done"
    except Exception as exc:  # noqa: BLE001 - no worker, a timeout or its error: the overlay stays empty
        log.warning("slice preview %s/%s/z%s not made by a worker: %s", volume_id, model_id, z, exc)
        return False


# --- the runner's side ------------------------------------------------------------------------------
def run(config: Config, job_id: int, cancel: Callable[[], bool] | None = None) -> jobs.JobOutcome | None:
    """Run a launched job in this process (None when it is gone or no longer queued)."""
    job = jobs.get_job(config, int(job_id))
    if job is None or job["status"] != JobState.QUEUED:
        log.warning("job %s is %s: not running it", job_id, job and job["status"])
        return None
    module, name = RUNNERS[job["kind"]].split(":")
    return getattr(importlib.import_module(module), name)(config, job, cancel=cancel)


def run_task(config: Config, job_id: int) -> str | None:
    """The Celery task body (``TASK_NAME``, registered by ``app.worker`` with the worker's config)."""
    outcome = run(config, int(job_id))
    return outcome.status if outcome else None


def main(argv: list[str] | None = None) -> int:
    """``python -m app.background JOB_ID``: run one launched job; SIGTERM/SIGINT cancel it cleanly."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    jobs.watch_server(os.getppid())    # a server killed with -9 sends no signal: stop with it all the same
    outcome = run(Config.from_env(), int(args[0]), cancel=stop.is_set)   # _spawn passed config.to_env()
    log.info("job %s: %s", args[0], outcome.status if outcome else "not run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
