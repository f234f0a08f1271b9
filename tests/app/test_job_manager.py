"""The background manager: which one the config picks, and forks that survive busy polling."""
from __future__ import annotations

import os
import signal
import threading
import time

from app import job_manager


def test_background_manager_is_diskcache_in_the_workspace(config):
    from dash import DiskcacheManager

    m = job_manager.make_background_manager(config)
    assert isinstance(m, DiskcacheManager)
    assert str(config.workspace) in m.handle.directory


def test_celery_backend_switches_manager_without_connecting(config):
    from dash import CeleryManager

    m = job_manager.make_background_manager(config.with_(job_backend="celery", redis_url="redis://127.0.0.1:6399/3"))
    assert isinstance(m, CeleryManager) and m.handle.conf.broker_url == "redis://127.0.0.1:6399/3"


def _poll(manager, i: int, stop: threading.Event) -> None:
    """What a request thread does for a browser tab waiting on a job: read progress/result, clear them."""
    while not stop.is_set():
        manager.get_progress(f"poll{i}")
        manager.result_ready(f"poll{i}")
        manager.clear_cache_entry(f"poll{i}")


def test_jobs_forked_while_other_threads_poll_the_cache_deliver_their_results(config):
    """Without the cache gate 39 and 40 of these 40 children (two runs) never wrote their result."""
    m = job_manager.make_background_manager(config)
    job_fn = m.make_job_fn(os.getpid, progress=False)        # the child writes its pid as the result
    stop = threading.Event()
    pollers = [threading.Thread(target=_poll, args=(m, i, stop), daemon=True) for i in range(4)]
    for t in pollers:
        t.start()
    pids = {}
    try:
        for n in range(40):
            pids[f"job{n}"] = m.call_job_fn(f"job{n}", job_fn, [], {})
            time.sleep(0.02)
    finally:
        stop.set()
        for t in pollers:
            t.join(10)
    deadline = time.monotonic() + 60
    missing = set(pids)
    while missing and time.monotonic() < deadline:
        missing = {k for k in missing if not m.result_ready(k)}
        time.sleep(0.1)
    for pid in pids.values():                               # no child outlives the test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not missing, f"{len(missing)} of {len(pids)} forked jobs never delivered a result"
    assert {m.get_result(k, None) for k in pids} == set(pids.values())


class _DelayedAfterFirstRead:
    """The job cache as a poll thread sees it when it is held up between reading the result and asking
    whether the job still runs: the job stores its result and ends meanwhile."""

    def __init__(self, cache, meanwhile):
        self.cache, self.meanwhile, self.reads = cache, meanwhile, 0

    def get(self, key, default=None, **kwargs):
        value = self.cache.get(key, default, **kwargs)
        self.reads += 1
        if self.reads == 1:
            self.meanwhile()
        return value

    def __getattr__(self, name):
        return getattr(self.cache, name)


def _result_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _poll_as_dash_does(manager, key: str, pid: int):
    """Dash's poll: the result first, then whether the job runs; "ended, no result" means cancelled."""
    result = manager.get_result(key, pid)
    return None if result is manager.UNDEFINED and not manager.job_running(pid) else result


def test_a_poll_delivers_a_result_stored_just_before_its_job_ended(config):
    """Such a poll took the job for cancelled (HTTP 204): a live-mode Keep in CI never answered."""
    from dash import DiskcacheManager

    m = job_manager.make_background_manager(config)
    for manager, delivered in ((m, True), (DiskcacheManager(m.handle), False)):   # ours, and Dash's own
        cache = manager.handle
        job_fn = manager.make_job_fn(lambda: _result_after(0.5), progress=False)
        pid = manager.call_job_fn(f"late-{delivered}", job_fn, [], {})

        def job_ends(pid=pid, manager=manager):
            deadline = time.monotonic() + 30
            while manager.job_running(pid) and time.monotonic() < deadline:
                time.sleep(0.02)

        manager.handle = _DelayedAfterFirstRead(cache, job_ends)
        try:
            got = _poll_as_dash_does(manager, f"late-{delivered}", pid)
        finally:
            manager.handle = cache
        assert (got == pid) is delivered, (got, pid, delivered)


def test_a_new_job_is_not_answered_by_an_unread_result_of_an_earlier_job_with_the_same_key(config):
    """Keys are hashes of the arguments: the same Keep after a reload must run, not get the old answer."""
    m = job_manager.make_background_manager(config)
    m.handle.set("same", "an earlier job's result nobody read")
    pid = m.call_job_fn("same", m.make_job_fn(os.getpid, progress=False), [], {})
    deadline = time.monotonic() + 30
    while not m.result_ready("same") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert m.get_result("same", pid) == pid
