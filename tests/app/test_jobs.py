"""Job records: transitions, failure text, cancel, stale recovery, compute lock, fork-safe torch threads."""
from __future__ import annotations

import threading
import time

import pytest

from app import jobs
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
    with jobs.compute_lock(config):
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
        q.put(jobs.configure_torch_threads(config.with_(torch_threads=2)))

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    assert q.get(timeout=20) == 1
    p.join(10)
    before = torch.get_num_threads()
    try:
        assert jobs.configure_torch_threads(config.with_(torch_threads=2)) == 2   # same process: configured count
    finally:
        torch.set_num_threads(before)


def test_background_manager_is_diskcache_in_the_workspace(config):
    from dash import DiskcacheManager

    m = jobs.make_background_manager(config)
    assert isinstance(m, DiskcacheManager)
    assert str(config.workspace) in m.handle.directory


def test_celery_backend_switches_manager_without_connecting(config):
    from dash import CeleryManager

    m = jobs.make_background_manager(config.with_(job_backend="celery", redis_url="redis://127.0.0.1:6399/3"))
    assert isinstance(m, CeleryManager) and m.handle.conf.broker_url == "redis://127.0.0.1:6399/3"


def test_cancel_button_of_the_jobs_list_flags_that_job(config, project):
    from callbacks.jobs import cancel_from_list
    from layouts import ids

    job_id = jobs.create_job(config, "train", project["id"])
    assert not cancel_from_list(config, {"type": ids.JOB_CANCEL_TYPE, "index": job_id}, None)   # a re-render
    assert not jobs.get_job(config, job_id)["cancel_requested"]
    assert cancel_from_list(config, {"type": ids.JOB_CANCEL_TYPE, "index": job_id}, 1)
    assert jobs.get_job(config, job_id)["cancel_requested"]
