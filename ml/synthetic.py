"""Synthetic EM-like volumes with ground truth, for tests, the demo and benchmarks.

Cells are Voronoi regions with dark membranes; mitochondria are dark, textured
ellipsoids inside cells (not touching membranes), so a segmenter has to learn shape and
texture, not a plain threshold: membranes are as dark as mitochondria.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: smallest Y and X: mitochondria centres keep 8 px from the border (any Z >= 1 works)
MIN_SIDE = 16


def _membranes(shape: tuple[int, int, int], n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Distance (in px) to the nearest Voronoi boundary, per voxel; cells are columns through z."""
    _, h, w = shape
    seeds = rng.uniform(0, 1, size=(n_cells, 2)) * (h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.stack([np.hypot(yy - sy, xx - sx) for sy, sx in seeds])
    d.sort(axis=0)
    gap = (d[1] - d[0]) / 2.0 if n_cells > 1 else np.full((h, w), 1e3, np.float32)
    return gap


def check_shape(shape) -> None:
    """Refuse a shape this generator cannot fill, naming the minimum (APP_DEMO_SHAPE is checked with it)."""
    if len(shape) != 3 or shape[0] < 1 or min(shape[1:]) < MIN_SIDE:
        raise ValueError(f"a synthetic volume needs three integers (Z, Y, X) with Z >= 1 and Y, X >= {MIN_SIDE}, "
                         f"got {tuple(shape)}")


def make_em_volume(
    shape: tuple[int, int, int] = (8, 256, 256),
    seed: int = 0,
    n_cells: int | None = None,
    n_mito: int | None = None,
    noise: float = 12.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(raw uint8 (Z,Y,X), mitochondria mask uint8 (Z,Y,X))``."""
    check_shape(shape)
    rng = np.random.default_rng(seed)
    z, h, w = shape
    area = h * w
    n_cells = n_cells or max(3, area // (96 * 96))
    n_mito = n_mito if n_mito is not None else max(2, area // (40 * 40))
    gap = _membranes(shape, n_cells, rng)
    membrane = np.exp(-(gap / 1.6) ** 2)

    zz, yy, xx = np.mgrid[0:z, 0:h, 0:w].astype(np.float32)
    mito = np.zeros(shape, dtype=bool)
    placed = 0
    for _ in range(n_mito * 20):
        if placed >= n_mito:
            break
        cy, cx = rng.uniform(8, h - 8), rng.uniform(8, w - 8)
        if gap[int(cy), int(cx)] < 12:
            continue
        a = rng.uniform(5, 14)
        b = rng.uniform(4, 7)
        c = rng.uniform(1.5, max(2.0, z / 2))
        cz = rng.uniform(0, z - 1)
        t = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dy * np.cos(t) + dx * np.sin(t)
        v = -dy * np.sin(t) + dx * np.cos(t)
        blob = (u / a) ** 2 + (v / b) ** 2 + ((zz - cz) / c) ** 2 <= 1.0
        blob &= gap[None] > 3
        mito |= blob
        placed += 1

    cyto = 170 + 12 * ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), (0.5, 3, 3))
    img = cyto - 110 * membrane[None]
    cristae = 0.5 + 0.5 * np.sin((xx + yy) * 0.9 + rng.uniform(0, 6))
    img = np.where(mito, 80 + 30 * cristae, img)
    dots = rng.random(shape) < 0.002
    img -= 60 * ndi.gaussian_filter(dots.astype(np.float32), (0, 1.2, 1.2)) * 12
    img = ndi.gaussian_filter(img, (0, 0.8, 0.8))
    img += rng.normal(0, noise, size=shape)
    raw = np.clip(img, 0, 255).astype(np.uint8)
    return raw, mito.astype(np.uint8)
