"""Candidate patches for active learning: a regular grid over the volume, minus what is labeled.

The pool is cheap to build (no pixels are read unless a label store must be checked), so it
can be rebuilt every round; a seeded subsample keeps scoring time bounded on large volumes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

#: A patch whose labeled fraction is above this is treated as already labeled.
LABELED_FRACTION = 0.01


@dataclass(frozen=True)
class Patch:
    """A square (size x size) patch on slice ``z`` with top-left corner (y, x); JSON-able via ``asdict``."""

    z: int
    y: int
    x: int
    size: int

    @property
    def box(self) -> tuple[int, int, int, int, int]:
        """``(z, y0, y1, x0, x1)`` with exclusive ends, the form LabelStore.read takes."""
        return (self.z, self.y, self.y + self.size, self.x, self.x + self.size)

    @property
    def window(self) -> tuple:
        """The patch as a numpy index of a (z, y, x) array: ``volume[patch.window]``."""
        return np.s_[self.z, self.y:self.y + self.size, self.x:self.x + self.size]


def _axis_range(rng: Sequence[int] | None, extent: int, name: str) -> tuple[int, int]:
    """Clip an optional ``(start, stop)`` to ``[0, extent]``; reject malformed ranges."""
    if rng is None:
        return 0, extent
    try:
        lo, hi = (int(v) for v in rng)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (start, stop) pair of ints, got {rng!r}") from None
    lo, hi = max(0, lo), min(extent, hi)
    if hi <= lo:
        raise ValueError(f"{name}={tuple(rng)} is empty for an axis of length {extent}")
    return lo, hi


def _starts(lo: int, hi: int, size: int, stride: int) -> range:
    """Top-left positions of patches lying fully inside ``[lo, hi)``."""
    return range(lo, hi - size + 1, stride)


def labeled_grid_patches(store: Any, size: int) -> list[Patch]:
    """The ``size`` px grid cells of each slice holding at least one labeled pixel, sorted.

    The one geometry of "a labeled patch" when labels are free strokes (exports, coreset
    reference, the model table's count): cells on a grid from the origin, the last row and
    column shifted inside the image, ``size`` shrunk to the image when it is smaller.
    Reads only the store's labeled tiles.
    """
    _, h, w = store.shape
    size = min(int(size), h, w)
    cells: set[Patch] = set()
    for z, y0, y1, x0, x1 in store.labeled_boxes():
        ys, xs = np.nonzero(np.asarray(store.read(z, y0, y1, x0, x1)))
        for cy, cx in set(zip(((ys + y0) // size).tolist(), ((xs + x0) // size).tolist())):
            cells.add(Patch(int(z), min(cy * size, h - size), min(cx * size, w - size), size))
    return sorted(cells, key=lambda p: (p.z, p.y, p.x))


def labeled_fraction_excluder(store: Any, threshold: float = LABELED_FRACTION) -> Callable[[Patch], bool]:
    """Exclude patches whose labeled fraction (label != 0) exceeds ``threshold``.

    Uses ``store.labeled_boxes()`` when available so only patches touching labels are read.
    """
    boxes = None
    if hasattr(store, "labeled_boxes"):
        boxes = {}
        for z, y0, y1, x0, x1 in store.labeled_boxes():
            boxes.setdefault(int(z), []).append((y0, y1, x0, x1))

    def touches_labels(p: Patch) -> bool:
        if boxes is None:
            return True
        return any(y0 < p.y + p.size and p.y < y1 and x0 < p.x + p.size and p.x < x1
                   for y0, y1, x0, x1 in boxes.get(p.z, ()))

    def exclude(p: Patch) -> bool:
        if not touches_labels(p):
            return False
        z, y0, y1, x0, x1 = p.box
        return float(np.count_nonzero(store.read(z, y0, y1, x0, x1))) / (p.size * p.size) > threshold

    return exclude


def _as_excluder(exclude: Any) -> Callable[[Patch], bool] | None:
    if exclude is None:
        return None
    if hasattr(exclude, "read"):
        return labeled_fraction_excluder(exclude)
    if callable(exclude):
        return exclude
    raise TypeError(
        f"exclude must be None, a callable(Patch) -> bool, or a LabelStore-like object with "
        f".read(z, y0, y1, x0, x1); got {type(exclude).__name__}"
    )


def candidate_pool(
    shape: Sequence[int],
    size: int = 128,
    stride: int | None = None,
    exclude: Any = None,
    max_candidates: int | None = None,
    seed: int = 0,
    y_range: Sequence[int] | None = None,
    z_range: Sequence[int] | None = None,
    x_range: Sequence[int] | None = None,
) -> list[Patch]:
    """All grid patches of a (Z, Y, X) volume that are not excluded, in (z, y, x) order.

    ``stride`` defaults to ``size`` (non-overlapping). ``y_range``/``z_range``/``x_range`` are
    half-open ``(start, stop)`` limits that patches must lie inside (e.g. keep a held-out
    half for evaluation). ``max_candidates`` keeps a seeded random subset (order preserved);
    the subsample is drawn before exclusion checks only when no excluder is given, so the
    result always has ``min(max_candidates, available)`` patches.
    """
    if len(shape) != 3:
        raise ValueError(f"shape must be (Z, Y, X), got {tuple(shape)}")
    zdim, ydim, xdim = (int(s) for s in shape)
    size = int(size)
    stride = size if stride is None else int(stride)
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be >= 1, got size={size}, stride={stride}")
    if max_candidates is not None and int(max_candidates) < 0:
        raise ValueError(f"max_candidates must be >= 0 or None, got {max_candidates}")
    z0, z1 = _axis_range(z_range, zdim, "z_range")
    y0, y1 = _axis_range(y_range, ydim, "y_range")
    x0, x1 = _axis_range(x_range, xdim, "x_range")
    if size > y1 - y0 or size > x1 - x0:
        raise ValueError(
            f"patch size {size} does not fit in the Y x X extent {y1 - y0} x {x1 - x0}; "
            f"choose size <= {min(y1 - y0, x1 - x0)}"
        )
    patches = [Patch(z, y, x, size) for z in range(z0, z1)
               for y in _starts(y0, y1, size, stride) for x in _starts(x0, x1, size, stride)]
    excluder = _as_excluder(exclude)
    rng = np.random.default_rng(seed)
    if excluder is not None:
        # Check in random order and stop once enough are kept: bounded cost on big volumes.
        order = rng.permutation(len(patches))
        limit = len(patches) if max_candidates is None else int(max_candidates)
        keep = []
        for i in order:
            if len(keep) >= limit:
                break
            if not excluder(patches[i]):
                keep.append(int(i))
        return [patches[i] for i in sorted(keep)]
    if max_candidates is not None and len(patches) > int(max_candidates):
        idx = np.sort(rng.choice(len(patches), int(max_candidates), replace=False))
        patches = [patches[i] for i in idx]
    return patches
