"""Progress reporting and cancellation shared by every long-running ml/ function.

One protocol for all callers (Dash job, Celery worker, CLI, benchmark): a callback
``progress(done, total, info)`` and a predicate ``cancel() -> bool``.
"""
from __future__ import annotations

from typing import Callable, Optional

ProgressFn = Optional[Callable[[int, int, dict], None]]
CancelFn = Optional[Callable[[], bool]]


class Cancelled(Exception):
    """Raised when the caller asked to stop; files written so far stay consistent."""


def report(progress: ProgressFn, done: int, total: int, **info) -> None:
    """Call ``progress`` if one was given."""
    if progress is not None:
        progress(int(done), int(total), info)


def check_cancel(cancel: CancelFn) -> None:
    """Raise :class:`Cancelled` when the caller asked to stop."""
    if cancel is not None and cancel():
        raise Cancelled("cancelled by user")
