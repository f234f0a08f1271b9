"""Undo records and the stroke log of the label store.

An undo record keeps only what a stroke overwrote: its mask crop (position + bool crop)
and the old values under the mask, compressed; a 300x300 stroke costs a few kB. The
stroke log is append-only JSON lines, merged here into one dict per stroke.
"""
from __future__ import annotations

import io

import numpy as np


def history_relpath(stroke_id: int) -> str:
    """Path of a stroke's undo record relative to the store root."""
    return f"history/{stroke_id:010d}.npz"


def encode_undo(z: int, y0: int, x0: int, value: int, mask: np.ndarray, old: np.ndarray) -> bytes:
    """Serialise what undoing a stroke needs: where, which pixels, what they held."""
    buf = io.BytesIO()
    np.savez_compressed(buf, pos=np.array([z, y0, x0, value], np.int64), mask=mask, old=old)
    return buf.getvalue()


def decode_undo(data: bytes) -> tuple[int, int, int, np.ndarray, np.ndarray]:
    """(z, y0, x0, mask crop, old values at mask) from :func:`encode_undo` bytes."""
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        z, y0, x0, _ = (int(v) for v in f["pos"])
        return z, y0, x0, f["mask"].astype(bool), f["old"].astype(np.uint8)


def undo_where(data: bytes) -> tuple[int, int, int]:
    """(z, value, pixels) of a stroke's undo record, reading only what says where and how big."""
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        z, _, _, value = (int(v) for v in f["pos"])
        return z, value, int(f["mask"].sum())


def merge_log(lines: list[dict]) -> list[dict]:
    """One dict per painted stroke, by id, with ``undone`` (as of its last undo / redo); duplicate
    lines (a replayed journal may append twice) are harmless."""
    strokes: dict[int, dict] = {}
    for e in lines:
        if e.get("event") == "paint":
            strokes.setdefault(e["id"], {**{k: v for k, v in e.items() if k != "event"}, "undone": False})
        elif e.get("event") in ("undo", "redo") and e["id"] in strokes:
            strokes[e["id"]]["undone"] = e["event"] == "undo"
    return [strokes[k] for k in sorted(strokes)]
