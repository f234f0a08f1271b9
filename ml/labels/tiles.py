"""Tile-level reads and read-modify-writes of the label store, on (root, meta).

Kept apart from the LabelStore API so the locking/transaction logic there stays short:
these functions assume the caller holds the right lock and commits ``txn``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ml.labels.chunks import (
    CHUNK,
    LabelStoreError,
    chunk_key,
    chunk_relpath,
    decode_chunk,
    encode_chunk,
    spans,
    tile_bbox,
)
from ml.labels.journal import Transaction


def load_tile(root: Path, meta: dict, key: str) -> np.ndarray:
    """A tile's labels (zeros when the index says it has none)."""
    if key not in meta["tiles"]:
        return np.zeros((CHUNK, CHUNK), np.uint8)
    path = root / chunk_relpath(key)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise LabelStoreError(f"label tile {path} is listed in meta.json but missing") from exc
    return decode_chunk(data, str(path))


def read_box(root: Path, z: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """uint8 labels of [y0, y1) x [x0, x1) on slice z. Goes by the tile files, not the
    meta index, so read cost does not grow with the number of labeled tiles. Caller
    holds at least the shared lock, so the files are one committed state."""
    out = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for cy, cx, ty, tx, by, bx in spans(y0, y1, x0, x1):
        path = root / chunk_relpath(chunk_key(z, cy, cx))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        out[by, bx] = decode_chunk(data, str(path))[ty, tx]
    return out


def write_box(
    root: Path, txn: Transaction, meta: dict, z: int, y0: int, x0: int, new: np.ndarray, where: np.ndarray
) -> np.ndarray:
    """Set ``new`` at ``where`` in the box at (z, y0, x0): stage changed tiles in ``txn``
    (emptied tiles are deleted), update meta's counts and tile index in place.

    Returns the old values over the whole box (what undo needs).
    """
    h, w = where.shape
    old = np.zeros((h, w), np.uint8)
    counts = np.zeros(256, np.int64)
    for cy, cx, ty, tx, by, bx in spans(y0, y0 + h, x0, x0 + w):
        key = chunk_key(z, cy, cx)
        tile = load_tile(root, meta, key)
        old[by, bx] = tile[ty, tx]
        m = where[by, bx]
        before = tile[ty, tx][m]
        after = new[by, bx][m]
        if np.array_equal(before, after):
            continue
        counts -= np.bincount(before, minlength=256)
        counts += np.bincount(after, minlength=256)
        tile[ty, tx][m] = after
        bbox = tile_bbox(tile)
        if bbox is None:
            txn.delete(chunk_relpath(key))
            meta["tiles"].pop(key, None)
        else:
            txn.put(chunk_relpath(key), encode_chunk(tile))
            meta["tiles"][key] = bbox
    for v in np.flatnonzero(counts[1:]) + 1:
        meta["counts"][str(v)] = meta["counts"].get(str(v), 0) + int(counts[v])
    return old
