"""Read candidate patches the way the segmentation sees them: with real image around them.

A bare 128 px patch scored alone sees padding at its border, where the whole-volume
segmentation sees tissue; with ``context`` px of real image on each side (clipped to the
volume, on the network's pooling grid) a candidate's scores are those of the pixels the
user will later see predicted. Windows are grouped by shape and patch offset so they batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ml.io.normalize import normalize

from .pool import Patch


@dataclass(frozen=True)
class Window:
    """Input box (z, y0, y1, x0, x1) of a patch and the patch's offset (oy, ox) inside it."""

    z: int
    y0: int
    y1: int
    x0: int
    x1: int

    def offset(self, p: Patch) -> tuple[int, int]:
        return p.y - self.y0, p.x - self.x0

    def key(self, p: Patch) -> tuple[int, int, int, int]:
        """Windows with the same key stack into one batch (same shape, same patch offset)."""
        return (self.y1 - self.y0, self.x1 - self.x0) + self.offset(p)


def window_of(p: Patch, context: int, shape: Sequence[int]) -> Window:
    """The patch grown by ``context`` px on each side, clipped to the (Z, Y, X) ``shape``."""
    _, h, w = (int(s) for s in shape[-3:])
    c = max(0, int(context))
    return Window(p.z, max(0, p.y - c), min(h, p.y + p.size + c), max(0, p.x - c), min(w, p.x + p.size + c))


def group_by_window(patches: Sequence[Patch], context: int, shape: Sequence[int]) -> list[list[int]]:
    """Indices of ``patches`` grouped by window key, in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(patches):
        groups.setdefault(window_of(p, context, shape).key(p), []).append(i)
    return list(groups.values())


class VolumeReader:
    """Normalised patches (``reader(p)``) and context windows (``reader.window(p, c)``) of a volume.

    ``lo``/``hi`` default to the volume's 1 / 99.5 percentiles (the app's display window, also
    used for training), so scoring sees the same intensities as training.
    """

    def __init__(self, volume: Any, lo: float | None = None, hi: float | None = None):
        if lo is None or hi is None:
            if not hasattr(volume, "percentiles"):
                raise TypeError("volume_reader needs lo and hi for an array without .percentiles(); pass both")
            lo, hi = volume.percentiles()
        self.volume, self.lo, self.hi = volume, float(lo), float(hi)
        self.shape = tuple(int(s) for s in volume.shape)

    def __call__(self, p: Patch) -> np.ndarray:
        return normalize(self.volume[p.window], self.lo, self.hi)

    def window(self, p: Patch, context: int) -> np.ndarray:
        win = window_of(p, context, self.shape)
        return normalize(self.volume[win.z, win.y0:win.y1, win.x0:win.x1], self.lo, self.hi)
