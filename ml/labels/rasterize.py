"""Turn plotly freehand shapes (SVG path strings) into bool pixel masks.

Coordinates: x is the column, y the row, in image pixels with pixel (r, c) centred at
(x=c, y=r) (the plotly Image trace convention: pixel centres on integers, each pixel
spans +-0.5). Path points are mapped as (x * scale + offset_x, y * scale + offset_y)
first, so a stroke drawn on a downsampled view lands on the full-resolution image;
``width`` is in those full-resolution pixels.

A stroke is a thick polyline with round caps and joins: a pixel is on iff its centre is
within width/2 of a segment (widths below 1 act as 1, giving a connected one-pixel
line). Closed paths (ending in Z) are also filled. All work is numpy over the stroke's
own bounding box, in batches of nearby segments, so cost follows the stroke, not the image.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

SUPPORTED = "M/m, L/l, H/h, V/v, Z/z (plotly drawopenpath / drawclosedpath)"
_TOKEN = re.compile(
    r"(?P<cmd>[MmLlHhVvZz])|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<sep>[\s,]+)|(?P<bad>.)"
)
_NARGS = {"M": 2, "L": 2, "H": 1, "V": 1}
_EPS = 1e-9
_BATCH_BUDGET = 1 << 14  # segments x pixels evaluated per numpy batch


def _tokens(path: str) -> list[str | float]:
    if not isinstance(path, str):
        raise TypeError(f"path must be an SVG path string, got {type(path).__name__}")
    out: list[str | float] = []
    for m in _TOKEN.finditer(path):
        if m.group("bad") is not None:
            raise ValueError(f"unsupported character {m.group('bad')!r} at {m.start()} in path; supported: {SUPPORTED}")
        if m.group("cmd"):
            out.append(m.group("cmd"))
        elif m.group("num"):
            out.append(float(m.group("num")))
    return out


def _subpaths(path: str) -> list[tuple[np.ndarray, bool]]:
    """Parse into (points (N, 2) of x, y, closed) per subpath."""
    toks = _tokens(path)
    if not toks:
        raise ValueError("empty path: expected e.g. 'M 10,10 L 20,15' (plotly drawopenpath/drawclosedpath)")
    if toks[0] not in ("M", "m"):
        raise ValueError(f"path must start with M or m, got {toks[0]!r}")
    subs: list[tuple[list, bool]] = []
    pts: list | None = None
    cur = start = (0.0, 0.0)
    cmd = ""
    i = 0
    while i < len(toks):
        t = toks[i]
        if isinstance(t, str):
            cmd, i = t, i + 1
            if cmd in "Zz":
                if pts is not None:
                    subs[-1] = (pts, True)
                    pts = None
                cur = start
                continue
            if i >= len(toks) or isinstance(toks[i], str):
                raise ValueError(f"command {cmd!r} needs {_NARGS[cmd.upper()]} number(s) after it")
            continue
        if not cmd or cmd in "Zz":
            raise ValueError(f"number {t} without a drawing command before it; supported: {SUPPORTED}")
        up, rel = cmd.upper(), cmd.islower()
        args = toks[i:i + _NARGS[up]]
        if len(args) < _NARGS[up] or any(isinstance(a, str) for a in args):
            raise ValueError(f"command {cmd!r} needs {_NARGS[up]} number(s), path ends or breaks at token {i}")
        i += _NARGS[up]
        x, y = cur
        if up in "ML":
            x, y = (x + args[0], y + args[1]) if rel else (args[0], args[1])
        elif up == "H":
            x = x + args[0] if rel else args[0]
        else:
            y = y + args[0] if rel else args[0]
        cur = (x, y)
        if up == "M" or pts is None:
            if up == "M":
                start = cur
                pts = [cur]
            else:  # drawing after Z without M starts at the old start point
                pts = [start, cur]
            subs.append((pts, False))
            if up == "M":
                cmd = "l" if rel else "L"  # implicit repeats after M are lineto
        else:
            pts.append(cur)
    return [(np.asarray(p, np.float64).reshape(-1, 2), closed) for p, closed in subs]


def parse_svg_path(path: str) -> list[np.ndarray]:
    """Subpaths as (N, 2) float arrays of (x, y); a closed subpath ends at its first point."""
    out = []
    for pts, closed in _subpaths(path):
        if closed and len(pts) > 1 and not np.array_equal(pts[0], pts[-1]):
            pts = np.vstack([pts, pts[:1]])
        out.append(pts)
    return out


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W) ints, got {shape!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be positive (H, W), got {shape!r}")
    return h, w


def _check_positive(name: str, v: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


def _stamp_segments(crop: np.ndarray, a: np.ndarray, b: np.ndarray, r: float, oy: int, ox: int) -> None:
    """OR into ``crop`` (whose pixel (0, 0) is image pixel (oy, ox)) the capsules of
    radius r around segments a[k]-b[k], evaluated together over their joint bbox."""
    lo_x = max(math.ceil(min(a[:, 0].min(), b[:, 0].min()) - r) - ox, 0)
    hi_x = min(math.floor(max(a[:, 0].max(), b[:, 0].max()) + r) - ox + 1, crop.shape[1])
    lo_y = max(math.ceil(min(a[:, 1].min(), b[:, 1].min()) - r) - oy, 0)
    hi_y = min(math.floor(max(a[:, 1].max(), b[:, 1].max()) + r) - oy + 1, crop.shape[0])
    if lo_x >= hi_x or lo_y >= hi_y:
        return
    px = np.arange(lo_x + ox, hi_x + ox, dtype=np.float64)[None, None, :] - a[:, 0, None, None]
    py = np.arange(lo_y + oy, hi_y + oy, dtype=np.float64)[None, :, None] - a[:, 1, None, None]
    d = b - a
    dx, dy = d[:, 0, None, None], d[:, 1, None, None]
    seg2 = np.maximum(dx * dx + dy * dy, 1e-300)  # zero-length segment: t = 0, a disc
    t = np.clip((px * dx + py * dy) / seg2, 0.0, 1.0)
    d2 = (px - t * dx) ** 2 + (py - t * dy) ** 2
    crop[lo_y:hi_y, lo_x:hi_x] |= (d2 <= r * r + _EPS).any(axis=0)


def _stamp_polyline(crop: np.ndarray, pts: np.ndarray, r: float, oy: int, ox: int) -> None:
    """Stamp consecutive segments in batches whose joint bbox x count stays small, so a
    freehand stroke of many short segments costs a few numpy calls, not one per segment."""
    if len(pts) == 1:
        pts = np.vstack([pts, pts])
    a, b = pts[:-1], pts[1:]
    lo = (np.minimum(a, b) - r).tolist()
    hi = (np.maximum(a, b) + r).tolist()
    i, n = 0, len(a)
    while i < n:
        (x0, y0), (x1, y1) = lo[i], hi[i]
        j = i + 1
        while j < n:
            nx0, ny0 = min(x0, lo[j][0]), min(y0, lo[j][1])
            nx1, ny1 = max(x1, hi[j][0]), max(y1, hi[j][1])
            if (j - i + 1) * (nx1 - nx0 + 1) * (ny1 - ny0 + 1) > _BATCH_BUDGET:
                break
            x0, y0, x1, y1 = nx0, ny0, nx1, ny1
            j += 1
        _stamp_segments(crop, a[i:j], b[i:j], r, oy, ox)
        i = j


def _fill_polygon(crop: np.ndarray, pts: np.ndarray, oy: int, ox: int) -> None:
    """Even-odd scanline fill of pixels whose centres are inside the polygon: per row the
    sorted edge crossings pair up into [enter, leave) spans, written via a difference array."""
    q = pts - (ox, oy)
    p0, p1 = q, np.roll(q, -1, axis=0)
    keep = p0[:, 1] != p1[:, 1]  # horizontal edges never cross a row
    p0, p1 = p0[keep], p1[keep]
    if len(p0) < 2:
        return
    h, w = crop.shape
    ys = np.arange(h, dtype=np.float64)[:, None]
    ylo, yhi = np.minimum(p0[:, 1], p1[:, 1]), np.maximum(p0[:, 1], p1[:, 1])
    crosses = (ys >= ylo) & (ys < yhi)  # half-open so a vertex is counted once
    xs = p0[:, 0] + (ys - p0[:, 1]) * (p1[:, 0] - p0[:, 0]) / (p1[:, 1] - p0[:, 1])
    xs = np.sort(np.where(crosses, xs, np.inf), axis=1)
    if xs.shape[1] % 2:
        xs = np.hstack([xs, np.full((h, 1), np.inf)])
    enter, leave = xs[:, 0::2], xs[:, 1::2]
    ok = np.isfinite(leave)
    rows = np.broadcast_to(np.arange(h)[:, None], enter.shape)[ok]
    c0 = np.clip(np.ceil(enter[ok]), 0, w).astype(np.int64)
    c1 = np.clip(np.ceil(leave[ok]), 0, w).astype(np.int64)
    diff = np.zeros((h, w + 1), np.int32)
    np.add.at(diff, (rows, c0), 1)
    np.add.at(diff, (rows, c1), -1)
    crop |= np.cumsum(diff, axis=1)[:, :w] > 0


def rasterize_path_bbox(
    path: str,
    shape: Sequence[int],
    width: float,
    fill: bool | None = None,
    scale: float = 1.0,
    offset: Sequence[float] = (0.0, 0.0),
) -> tuple[np.ndarray, int, int]:
    """(mask crop, y0, x0): the stroke's pixels within its bounding box, clipped to the
    image; a stroke entirely outside gives a (0, 0) crop. ``fill``: None fills closed
    paths, True fills every subpath (implicitly closed), False only strokes outlines."""
    h, w = _check_shape(shape)
    r = max(_check_positive("width", width), 1.0) / 2.0
    scale = _check_positive("scale", scale)
    try:
        ox, oy = (float(o) for o in offset)
    except (TypeError, ValueError):
        raise ValueError(f"offset must be (offset_x, offset_y) numbers, got {offset!r}") from None
    subs = [(pts * scale + (ox, oy), closed) for pts, closed in _subpaths(path)]
    allpts = np.vstack([p for p, _ in subs])
    if not np.isfinite(allpts).all():
        raise ValueError("path has non-finite coordinates (after scale/offset)")
    y0 = max(math.ceil(allpts[:, 1].min() - r), 0)
    y1 = min(math.floor(allpts[:, 1].max() + r) + 1, h)
    x0 = max(math.ceil(allpts[:, 0].min() - r), 0)
    x1 = min(math.floor(allpts[:, 0].max() + r) + 1, w)
    if y0 >= y1 or x0 >= x1:
        return np.zeros((0, 0), bool), 0, 0
    crop = np.zeros((y1 - y0, x1 - x0), bool)
    for pts, closed in subs:
        if (fill is True or (fill is None and closed)) and len(pts) >= 3:
            _fill_polygon(crop, pts, y0, x0)
        if closed and len(pts) > 1:
            pts = np.vstack([pts, pts[:1]])
        _stamp_polyline(crop, pts, r, y0, x0)
    return crop, y0, x0


def rasterize_path(
    path: str,
    shape: Sequence[int],
    width: float,
    fill: bool | None = None,
    scale: float = 1.0,
    offset: Sequence[float] = (0.0, 0.0),
) -> np.ndarray:
    """Full-size bool (H, W) mask of the stroke; see :func:`rasterize_path_bbox`."""
    h, w = _check_shape(shape)
    crop, y0, x0 = rasterize_path_bbox(path, shape, width, fill, scale, offset)
    out = np.zeros((h, w), bool)
    out[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return out
