"""Argument checks for the label store: every bad input gets a typed error that says
what was wrong and what is accepted, before any lock is taken or file touched."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """A (Z, Y, X) shape of positive ints."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a (Z, Y, X) sequence of ints, got {shape!r}") from None
    if len(dims) != 3 or not all(_is_int(d) and d > 0 for d in dims):
        raise ValueError(f"shape must be 3 positive ints (Z, Y, X), got {shape!r}")
    return tuple(int(d) for d in dims)  # type: ignore[return-value]


def check_classes(classes: Sequence[dict | str]) -> list[dict]:
    """1..255 classes as {"name", "color"} dicts with unique names (a bare str is a name)."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    if isinstance(classes, (str, dict)) or not isinstance(classes, Sequence):
        raise TypeError(f"classes must be a list of {{'name', 'color'}} dicts or names, got {classes!r}")
    out = []
    for i, c in enumerate(classes):
        c = {"name": c} if isinstance(c, str) else c
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"].strip():
            raise ValueError(f"class {i} must be a dict with a non-empty 'name', got {c!r}")
        color = c.get("color", palette[i % len(palette)])
        if not isinstance(color, str) or not color:
            raise ValueError(f"class {c['name']!r}: color must be a CSS colour string like '#ff7f0e', got {color!r}")
        out.append({**c, "name": c["name"], "color": color})
    names = [c["name"] for c in out]
    if not 1 <= len(out) <= 255:
        raise ValueError(f"need 1..255 classes (labels are uint8), got {len(out)}")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return out


def check_z(z: Any, shape: tuple[int, int, int]) -> int:
    if not _is_int(z):
        raise TypeError(f"z must be an int slice index, got {z!r}")
    if not 0 <= z < shape[0]:
        raise IndexError(f"z={z} out of range: the volume has {shape[0]} slices (0..{shape[0] - 1})")
    return int(z)


def check_box(lo: Any, hi: Any, n: int, axis: str) -> tuple[int, int]:
    """[lo, hi) on an axis of size n; hi None means n, hi beyond n is clipped (numpy-like)."""
    hi = n if hi is None else hi
    if not (_is_int(lo) and _is_int(hi)):
        raise TypeError(f"{axis} bounds must be ints, got {lo!r}, {hi!r}")
    if lo < 0 or hi < lo or lo > n:
        raise IndexError(f"{axis} range [{lo}, {hi}) invalid for size {n}: need 0 <= {axis}0 <= {axis}1")
    return int(lo), int(min(hi, n))


def clip_mask(mask: Any, y0: Any, x0: Any, shape: tuple[int, int, int]) -> tuple[np.ndarray, int, int]:
    """Crop a bool mask placed at (y0, x0) to the image and to its own True pixels."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"mask must be a bool array, got dtype {mask.dtype} (use mask.astype(bool) or mask > 0)")
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D (rows, cols), got shape {mask.shape}")
    if not (_is_int(y0) and _is_int(x0)):
        raise TypeError(f"y0, x0 must be ints, got {y0!r}, {x0!r}")
    h, w = shape[1], shape[2]
    cy0, cx0 = max(0, -int(y0)), max(0, -int(x0))
    cy1, cx1 = min(mask.shape[0], h - int(y0)), min(mask.shape[1], w - int(x0))
    crop = mask[cy0:max(cy0, cy1), cx0:max(cx0, cx1)]
    rows, cols = np.flatnonzero(crop.any(axis=1)), np.flatnonzero(crop.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask has no True pixels inside the image: nothing to paint")
    crop = crop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return np.ascontiguousarray(crop), int(y0) + cy0 + int(rows[0]), int(x0) + cx0 + int(cols[0])


def check_range(s: Any, n: int, axis: str) -> tuple[int, int]:
    """[start, stop) of a step-1 slice or an int index (kept as length 1) on size n."""
    if _is_int(s):
        i = int(s) + n if s < 0 else int(s)
        if not 0 <= i < n:
            raise IndexError(f"{axis} index {s} out of range for size {n}")
        return i, i + 1
    if not isinstance(s, slice):
        raise TypeError(f"{axis} must be an int or a slice, got {type(s).__name__}")
    start, stop, step = s.indices(n)
    if step != 1:
        raise ValueError(f"{axis} slice step must be 1, got {step}")
    return start, max(start, stop)
