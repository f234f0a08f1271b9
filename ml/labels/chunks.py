"""Chunk geometry and codec for the label store.

Labels live in (1, 256, 256) uint8 tiles so a stroke rewrites only the few tiles its
bounding box touches. Tiles are always stored full size (edge tiles padded with 0,
which is "unlabeled" and never painted), zlib-compressed raw bytes: sparse label
tiles compress to a few hundred bytes and decode in microseconds.
"""
from __future__ import annotations

import zlib
from typing import Iterator

import numpy as np

CHUNK = 256
CHUNK_BYTES = CHUNK * CHUNK
LEVEL = 3  # zlib level: labels are runs of one value, higher levels buy little


class LabelStoreError(RuntimeError):
    """The on-disk store is damaged or not a label store (not a usage error)."""


def chunk_key(z: int, cy: int, cx: int) -> str:
    """Name of one tile, used both as meta index key and file stem."""
    return f"{z}.{cy}.{cx}"


def parse_key(key: str) -> tuple[int, int, int]:
    """Inverse of :func:`chunk_key`."""
    z, cy, cx = (int(p) for p in key.split("."))
    return z, cy, cx


def chunk_relpath(key: str) -> str:
    """Path of a tile file relative to the store root."""
    return f"chunks/{key}.z"


def encode_chunk(tile: np.ndarray) -> bytes:
    """Compress one (256, 256) uint8 tile."""
    if tile.shape != (CHUNK, CHUNK) or tile.dtype != np.uint8:
        raise ValueError(f"tile must be uint8 ({CHUNK}, {CHUNK}), got {tile.dtype} {tile.shape}")
    return zlib.compress(np.ascontiguousarray(tile).tobytes(), LEVEL)


def decode_chunk(data: bytes, name: str = "chunk") -> np.ndarray:
    """Decompress one tile; damaged files raise :class:`LabelStoreError` naming the file."""
    try:
        raw = zlib.decompress(data)
    except zlib.error as exc:
        raise LabelStoreError(f"label tile {name} is corrupt: {exc}") from exc
    if len(raw) != CHUNK_BYTES:
        raise LabelStoreError(f"label tile {name} holds {len(raw)} bytes, expected {CHUNK_BYTES}")
    return np.frombuffer(raw, np.uint8).reshape(CHUNK, CHUNK).copy()


def spans(y0: int, y1: int, x0: int, x1: int) -> Iterator[tuple[int, int, slice, slice, slice, slice]]:
    """Tiles meeting the box [y0, y1) x [x0, x1).

    Yields (cy, cx, tile_ys, tile_xs, box_ys, box_xs): the overlap as slices into the
    tile and into the box, so callers copy between them without index arithmetic.
    """
    for cy in range(y0 // CHUNK, (y1 - 1) // CHUNK + 1 if y1 > y0 else y0 // CHUNK):
        gy0, gy1 = max(y0, cy * CHUNK), min(y1, (cy + 1) * CHUNK)
        for cx in range(x0 // CHUNK, (x1 - 1) // CHUNK + 1 if x1 > x0 else x0 // CHUNK):
            gx0, gx1 = max(x0, cx * CHUNK), min(x1, (cx + 1) * CHUNK)
            yield (
                cy,
                cx,
                slice(gy0 - cy * CHUNK, gy1 - cy * CHUNK),
                slice(gx0 - cx * CHUNK, gx1 - cx * CHUNK),
                slice(gy0 - y0, gy1 - y0),
                slice(gx0 - x0, gx1 - x0),
            )


def tile_bbox(tile: np.ndarray) -> list[int] | None:
    """[y0, y1, x0, x1] of labeled pixels inside a tile (tile coordinates), None when empty."""
    rows = np.flatnonzero(tile.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(tile.any(axis=0))
    return [int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1]
