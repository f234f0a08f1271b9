"""Compute resources of a job process: one compute job at a time per workspace, and torch's threads.

A z-chunk task (``app.services.chunks``) does not take the lock: it is part of a job that holds it.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Iterator

from app.config import Config
from app.workspace import Workspace
from ml.progress import check_cancel

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

_MAIN_PID = os.getpid()           # the process that imported the app (server / worker parent)


@contextlib.contextmanager
def compute_lock(config: Config, cancel: Callable[[], bool] | None = None, poll_s: float = 0.5) -> Iterator[None]:
    """One compute job at a time across processes (flock on a workspace file); waits, honours cancel."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = Workspace(config.workspace).ensure().lock_path
    with open(path, "a+") as fh:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                check_cancel(cancel)
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def configure_torch_threads(config: Config) -> int:
    """1 thread in forked workers (fork-after-OpenMP hang), else config.torch_threads (0 = keep)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return 0
    if os.getpid() != _MAIN_PID:
        torch.set_num_threads(1)
    elif config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    return torch.get_num_threads()
