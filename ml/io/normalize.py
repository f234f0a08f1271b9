"""Intensity windows: the one mapping from raw grey values to model input and to display.

Training, inference and the viewer must agree on how raw values become [0, 1], so all
of them go through ``normalize`` with the same (lo, hi) (usually volume percentiles).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def normalize(arr: Any, lo: float, hi: float) -> np.ndarray:
    """``(arr - lo) / (hi - lo)`` as float32, clipped to [0, 1]; NaN becomes 0.

    ``hi == lo`` is a threshold (values above lo -> 1); ``hi < lo`` raises ValueError.
    """
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
        raise ValueError(f"intensity window needs finite lo <= hi, got lo={lo}, hi={hi}")
    out = np.array(arr, dtype=np.float32, copy=True)
    if hi == lo:
        return (out > lo).astype(np.float32)
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    np.nan_to_num(out, copy=False, nan=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def to_uint8(arr: Any, lo: float, hi: float) -> np.ndarray:
    """Display window: ``normalize`` scaled to 0..255 and rounded to uint8."""
    out = normalize(arr, lo, hi)
    out *= 255.0
    out += 0.5
    return out.astype(np.uint8)
