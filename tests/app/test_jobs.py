"""Job records: transitions, failure text, cancel, stale recovery, compute lock, fork-safe torch threads."""
from __future__ import annotations

import threading
import time

import pytest

from app import compute, job_manager, jobs
from app.db import session_scope
from app.errors import UserError
from app.models import Job
from ml.progress import check_cancel, report


def test_done_job_keeps_result_and_progress(config, project):
    seen = []

    def work(progress, cancel, n):
        for i in range(n):
            report(progress, i + 1, n, loss=1.0 / (i + 1))
        return {"answer": 42}

    out = jobs.run_job(config, "train", project["id"], work, lambda d, t, info: seen.append((d, t, info)),
                       params={"n": 3}, n=3)
    assert out.ok and out.result == {"answer": 42}
    job = jobs.get_job(config, out.job_id)
    assert job["status"] == "done" and job["result"] == {"answer": 42}
    assert (job["progress"], job["total"]) == (3, 3) and job["info"] == {"loss": pytest.approx(1 / 3)}
    assert job["started"] and job["finished"] and job["params"] == {"n": 3}
    assert seen[-1] == (3, 3, {"loss": pytest.approx(1 / 3)})   # the final update always reaches the panel


def test_failed_job_keeps_the_error_text(config, project):
    def boom(progress, cancel):
        raise UserError("no labels yet: paint some pixels first")

    out = jobs.run_job(config, "train", project["id"], boom)
    assert out.status == "failed" and out.error == "no labels yet: paint some pixels first"
    job = jobs.get_job(config, out.job_id)
    assert job["status"] == "failed" and job["error"] == out.error and job["finished"]


def test_unexpected_exception_is_recorded_not_raised(config, project):
    out = jobs.run_job(config, "segment", project["id"], lambda progress, cancel: 1 / 0)
    assert out.status == "failed" and "ZeroDivisionError" in jobs.get_job(config, out.job_id)["error"]


def test_cancel_flag_stops_a_running_job(config, project, monkeypatch):
    monkeypatch.setattr(jobs, "CANCEL_POLL_S", 0.0)
    started = threading.Event()

    def loop(progress, cancel):
        started.set()
        for _ in range(500):
            check_cancel(cancel)
            time.sleep(0.01)
        return "finished"

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("o", jobs.run_job(config, "suggest", project["id"], loop)))
    t.start()
    assert started.wait(5)
    assert jobs.request_cancel(config, kind="suggest", project_id=project["id"]) == 1
    t.join(10)
    assert result["o"].status == "cancelled"
    assert jobs.get_job(config, result["o"].job_id)["status"] == "cancelled"


def test_unknown_kind_is_refused(config):
    with pytest.raises(ValueError, match="kind"):
        jobs.create_job(config, "dance", None)


def _mark_running(config, jid, pid, cancel=False):
    with session_scope(config) as s:
        j = s.get(Job, jid)
        j.status, j.pid, j.cancel_requested = "running", pid, cancel


def test_stale_jobs_fail_or_cancel_but_live_ones_stay(config, project):
    import os

    dead, asked, alive = (jobs.create_job(config, "train", project["id"]) for _ in range(3))
    _mark_running(config, dead, 2**22 + 4321)
    _mark_running(config, asked, 2**22 + 4322, cancel=True)
    _mark_running(config, alive, os.getpid())
    assert jobs.recover_stale(config) == 2
    states = {j["id"]: j for j in jobs.list_jobs(config, project_id=project["id"])}
    assert states[dead]["status"] == "failed" and "run it again" in states[dead]["error"]
    assert states[asked]["status"] == "cancelled"
    assert states[alive]["status"] == "running"


def test_a_remote_workers_job_is_judged_by_its_heartbeat(config, project):
    """A job on another machine cannot be checked by pid: a silent one fails with the machine named."""
    from datetime import timedelta

    from app.models import Job, utcnow

    silent, beating = (jobs.create_job(config, "segment", project["id"]) for _ in range(2))
    with session_scope(config) as s:
        for jid, age in ((silent, jobs.REMOTE_STALE_S + 30), (beating, 5)):
            j = s.get(Job, jid)
            j.status, j.host, j.pid = "running", "gpu-box", 1
            j.started = j.beat = utcnow() - timedelta(seconds=age)
    assert jobs.recover_stale(config) == 1
    assert jobs.get_job(config, silent)["status"] == "failed"
    assert "worker on gpu-box stopped answering" in jobs.get_job(config, silent)["error"]
    assert jobs.get_job(config, beating)["status"] == "running"


def test_a_running_job_stamps_its_heartbeat(config, project):
    from app.models import Job

    jid = jobs.create_job(config, "train", project["id"])
    with jobs.Heartbeat(config, jid, every_s=0.05):
        time.sleep(0.3)
    with session_scope(config) as s:
        assert s.get(Job, jid).beat is not None


def test_compute_lock_runs_one_job_at_a_time(config, project):
    order = []

    def work(tag):
        def fn(progress, cancel):
            order.append(f"{tag}-start")
            time.sleep(0.3)
            order.append(f"{tag}-end")
        return fn

    threads = [threading.Thread(target=jobs.run_job, args=(config, "train", project["id"], work(t))) for t in "ab"]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(10)
    assert order in (["a-start", "a-end", "b-start", "b-end"], ["b-start", "b-end", "a-start", "a-end"])


def test_waiting_for_the_lock_shows_queued_and_can_be_cancelled(config, project, monkeypatch):
    monkeypatch.setattr(jobs, "CANCEL_POLL_S", 0.0)
    with compute.compute_lock(config):
        t = threading.Thread(target=jobs.run_job, args=(config, "segment", project["id"], lambda **k: "x"))
        t.start()
        time.sleep(0.3)
        job = jobs.latest_job(config, "segment", project["id"])
        assert job["status"] == "queued"
        jobs.request_cancel(config, job["id"])
        t.join(5)
    assert jobs.get_job(config, job["id"])["status"] == "cancelled"


def test_forked_job_runs_torch_with_one_thread(config):
    """The fork-after-OpenMP hang: a forked worker must not use torch's thread pool."""
    import multiprocessing as mp

    import torch

    def child(q):
        q.put(compute.configure_torch_threads(config.with_(torch_threads=2)))

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    assert q.get(timeout=20) == 1
    p.join(10)
    before = torch.get_num_threads()
    try:
        assert compute.configure_torch_threads(config.with_(torch_threads=2)) == 2   # same process: configured count
    finally:
        torch.set_num_threads(before)


def test_cancel_button_of_the_jobs_list_flags_that_job(config, project):
    from callbacks.jobs import cancel_from_list
    from layouts import ids

    job_id = jobs.create_job(config, "train", project["id"])
    assert not cancel_from_list(config, {"type": ids.JOB_CANCEL_TYPE, "index": job_id}, None)   # a re-render
    assert not jobs.get_job(config, job_id)["cancel_requested"]
    assert cancel_from_list(config, {"type": ids.JOB_CANCEL_TYPE, "index": job_id}, 1)
    assert jobs.get_job(config, job_id)["cancel_requested"]


# --- job processes must not outlive their server (issue 9) -------------------------------------------------
def _gone(pid: int) -> bool:
    """No such process, or a zombie (an orphan's reaper may be slow or absent in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def _wait(check, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def _server_with_a_job(config, tmp_path, job_fn):
    """A forked stand-in 'server' that starts ``job_fn`` like Dash does (our manager's call_job_fn),
    writes the job's pid to a file and idles: returns (server process, job pid)."""
    import multiprocessing as mp
    import os

    from app import db

    def server():
        jobs.get_job(config, 1)                  # the server holds a pooled SQLite connection, as a real one does
        pid = job_manager.make_background_manager(config).call_job_fn("key", job_fn, [], {})
        (tmp_path / "job.pid.tmp").write_text(str(pid))
        os.replace(tmp_path / "job.pid.tmp", tmp_path / "job.pid")
        time.sleep(60)

    with db.quiet_for_fork():                    # the test process's own connections stay out of it
        proc = mp.get_context("fork").Process(target=server, daemon=True)
        proc.start()
    _wait(lambda: (tmp_path / "job.pid").exists(), 30, "the job process to start")
    return proc, int((tmp_path / "job.pid").read_text())


def test_job_process_drops_the_inherited_listening_socket():
    import multiprocessing as mp
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    ctx = mp.get_context("fork")
    released = ctx.Value("i", -1)

    def child():
        released.value = job_manager.release_inherited_sockets()
        time.sleep(30)

    p = ctx.Process(target=child, daemon=True)
    p.start()
    try:
        _wait(lambda: released.value >= 0, 20, "the child to release its sockets")
        assert released.value >= 1
        srv.close()                              # the server goes: nobody may listen on its port any more
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        p.kill()
        p.join(5)


@pytest.mark.parametrize("cooperative", [True, False])
def test_job_stops_and_says_why_when_its_server_dies(config, project, tmp_path, monkeypatch, cooperative):
    """Cooperative: the job's cancel check stops it; stubborn: the process exits after the grace time.
    Either way the row says the server stopped, and the process is gone within seconds."""
    import os
    import signal

    monkeypatch.setattr(jobs, "WATCH_POLL_S", 0.1)
    monkeypatch.setattr(jobs, "STOP_GRACE_S", 0.5)

    def work(progress, cancel):
        while True:
            if cooperative:
                check_cancel(cancel)
            time.sleep(0.05)

    def job_fn(*_dash_args):
        jobs.run_job(config, "train", project["id"], work)

    server, pid = _server_with_a_job(config, tmp_path, job_fn)
    _wait(lambda: (jobs.latest_job(config, "train", project["id"]) or {}).get("status") == "running", 30,
          "the job to run")
    os.kill(server.pid, signal.SIGKILL)
    server.join(5)
    took = _wait(lambda: _gone(pid), 10, "the job process to stop after its server died")
    assert took < 5.0
    job = jobs.get_job(config, jobs.latest_job(config, "train", project["id"])["id"])
    assert job["status"] == "failed" and job["error"] == jobs.SERVER_STOPPED


def test_commit_of_a_job_survives_its_server_dying_and_a_restart(config, project, tmp_path):
    """The lost-version bug: a job forked while the server held a SQLite connection inherited SQLite's
    "locks held" state and took no real lock; a restarted server that opened and closed the database
    then deleted the WAL under it, and the job's next commit vanished. Jobs fork with no connection open."""
    import os
    import signal
    import subprocess
    import sys

    from app.db import database
    from app.workspace import Workspace

    flag = tmp_path / "go-on"
    database(config).engine.dispose()     # this process holds no connection: it plays the restarted server

    def job_fn(*_dash_args):
        jid = jobs.create_job(config, "train", project["id"])      # a first write while the server lives
        (tmp_path / "jid").write_text(str(jid))
        _wait(flag.exists, 20, "the restart")
        jobs.set_state(config, jid, "done", result={"model_id": 7})   # e.g. the model version row

    server, pid = _server_with_a_job(config, tmp_path, job_fn)
    _wait(lambda: (tmp_path / "jid").exists() and (tmp_path / "jid").read_text(), 30, "the job's first write")
    os.kill(server.pid, signal.SIGKILL)
    server.join(5)
    restart = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('select * from job'); c.close()"
    subprocess.run([sys.executable, "-c", restart, str(Workspace(config.workspace).db_path)], check=True, timeout=60)
    flag.touch()
    _wait(lambda: _gone(pid), 20, "the job process to end")
    jid = int((tmp_path / "jid").read_text())
    assert jobs.get_job(config, jid)["status"] == "done", "the job's commit after the restart was lost"
