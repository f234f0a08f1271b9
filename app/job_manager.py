"""Dash's background manager: Celery when configured, else diskcache with forked job processes.

Fork trap 2 (measured, ``tests/app/test_job_manager.py``): Dash forks each job from a request
thread while other request threads poll the same diskcache (SQLite) for progress and results.
A child forked while another thread was inside SQLite inherits its mutexes and file-lock state
"held": its first cache write then hangs or times out, the result never reaches the cache and
the page polls forever (the likely cause of a live-mode "Keep" that never answered in CI). The test forks 40 jobs
beside four polling threads: 39 and 40 of them (two runs) never delivered without the gate, 0
with it. So every server-side use of the cache goes through :data:`_CACHE_GATE`, and the fork
happens holding it, with the workspace database quiet too (``app.db.quiet_for_fork``).

A poll's race (both managers): Dash reads a job's result, then asks whether the job still runs, and
takes "ended, no result" for a cancelled job (HTTP 204: the page never shows the answer). A job that
wrote its result and ended between the two was lost; CI met it as a live-mode "Keep" that never
answered. ``_delivering`` reads once more when it sees the job ended: what an ended job wrote is stored.
And a job's key is a hash of its arguments (a Keep with the same project and click count after a reload):
an earlier job's result nobody read (its page gone) would be served instead of the new job's, so
a job's entries are cleared before it starts.
"""
from __future__ import annotations

import functools
import os
import socket
import stat
import threading
from typing import Any, Callable

from app import db, jobs
from app.config import Config
from app.workspace import Workspace

_CACHE_GATE = threading.RLock()
# DiskcacheManager's methods that touch its cache (or its job table) in the server process
_GATED = ("terminate_job", "terminate_unhealthy_job", "job_running", "clear_cache_entry",
          "get_or_create_signing_secret", "get_progress", "result_ready", "get_result", "get_updated_props")


def make_background_manager(config: Config):
    """JobProcessManager (diskcache) on the workspace (default) or CeleryManager (APP_JOB_BACKEND=celery)."""
    if config.job_backend == "celery":
        from app.celery_app import make_celery

        return _celery_class()(make_celery(config))
    import diskcache

    return _manager_class()(diskcache.Cache(str(Workspace(config.workspace).jobs_cache_dir())))


def _delivering(get_result: Callable) -> Callable:
    """``get_result`` that reads again once it sees the job ended, so a result stored just before the end
    is delivered, not taken for a cancellation (the module's "poll's race")."""
    @functools.wraps(get_result)
    def call(self, key, job):
        result = get_result(self, key, job)
        if result is self.UNDEFINED and job and not self.job_running(job):
            result = get_result(self, key, job)
        return result
    return call


def clear_entries(manager, key: str) -> None:
    """Drop an earlier job's unread result, progress and side updates under ``key`` (keys repeat with the
    arguments), so a new job's poll reads only what that job stores."""
    for stale in (key, manager._make_progress_key(key), manager._make_set_props_key(key)):
        manager.clear_cache_entry(stale)


def _gated(method: Callable) -> Callable:
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with _CACHE_GATE:
            return method(self, *args, **kwargs)
    return call


@functools.cache
def _manager_class():
    from dash import DiskcacheManager

    class JobProcessManager(DiskcacheManager):
        """DiskcacheManager whose job processes hold no server state and stop with the server."""
        get_result = _delivering(DiskcacheManager.get_result)

        def call_job_fn(self, key, job_fn, args, context):
            with db.quiet_for_fork(), _CACHE_GATE:
                clear_entries(self, key)
                return super().call_job_fn(key, functools.partial(job_process_main, os.getpid(), job_fn), args, context)

    for name in _GATED:
        setattr(JobProcessManager, name, _gated(getattr(JobProcessManager, name)))
    return JobProcessManager


@functools.cache
def _celery_class():
    from dash import CeleryManager

    class CeleryJobManager(CeleryManager):
        """CeleryManager whose polls deliver a result stored just before its task ended, and only its own."""
        get_result = _delivering(CeleryManager.get_result)

        def call_job_fn(self, key, job_fn, args, context):
            clear_entries(self, key)
            return super().call_job_fn(key, job_fn, args, context)

    return CeleryJobManager


def job_process_main(server_pid: int, job_fn: Callable[..., Any], *args: Any) -> Any:
    """Forked job process: free the server's sockets, watch the server, run (app.db forgot the pools)."""
    jobs.forget_current_job()           # a job the server ran in-process is not ours
    release_inherited_sockets()
    jobs.watch_server(server_pid)
    return job_fn(*args)


def release_inherited_sockets() -> int:
    """Inherited TCP/listening sockets -> /dev/null: the port dies with the server, fds stay valid."""
    fd_dir = next((d for d in ("/proc/self/fd", "/dev/fd") if os.path.isdir(d)), None)
    fds = sorted(int(f) for f in os.listdir(fd_dir) if f.isdigit()) if fd_dir else []
    null, n = os.open(os.devnull, os.O_RDWR), 0
    for fd in fds:
        try:
            if fd <= 2 or fd == null or not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
            try:
                accept = getattr(socket, "SO_ACCEPTCONN", None)
                listening = accept is not None and sock.getsockopt(socket.SOL_SOCKET, accept)
                inet = sock.family in (socket.AF_INET, socket.AF_INET6)
            finally:
                sock.detach()
            if inet or listening:
                os.dup2(null, fd, inheritable=False)
                n += 1
        except OSError:
            continue
    os.close(null)
    return n


def _after_fork_in_child() -> None:
    global _CACHE_GATE
    _CACHE_GATE = threading.RLock()     # the forking thread held it; the child starts with it free


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
