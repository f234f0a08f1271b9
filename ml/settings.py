"""Allowed values of settings, and the one check that names a bad one.

``ml.model.UNet2D``, ``ml.train.TrainConfig`` and ``ml.live.LiveConfig`` declare their ranges
with these, and ``app.config`` runs the same check on APP_MODEL / APP_TRAIN / APP_LIVE at
start-up: one place knows each range, and a bad value is refused with its name before any job
(or layer) is built. No imports from ``ml``, so any module can use it without a cycle.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping, Sequence

Range = tuple[Callable[[Any], bool], str]     # (test, the allowed values in words)
FLAG: Range = (lambda v: isinstance(v, bool), "true or false")


def whole(low: int) -> Range:
    """Integers >= ``low`` (a bool is not a number here)."""
    return (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low,
            f"an integer >= {low}")


def number(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False) -> Range:
    """Finite numbers from ``low`` to ``high`` (each end included unless ``*_open``)."""
    def ok(v: Any) -> bool:
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    if high == math.inf:
        return ok, f"a number {'>' if low_open else '>='} {low}"
    return ok, f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def one_of(options: Sequence) -> Range:
    return (lambda v: v in options), f"one of {', '.join(map(repr, options))}"


def check_settings(values: Mapping[str, Any], ranges: Mapping[str, Range], what: str = "setting") -> None:
    """Raise ValueError naming the first unknown key (and the known ones) or the first value out of its range."""
    unknown = sorted(set(values) - set(ranges))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {sorted(ranges)}")
    for key, (ok, allowed) in ranges.items():
        if key in values and not ok(values[key]):
            raise ValueError(f"{key}={values[key]!r} is not allowed: must be {allowed}")
