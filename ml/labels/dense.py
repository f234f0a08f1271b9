"""Import of dense label volumes (numpy, memmap, zarr, Volume) into a LabelStore.

Streams one z-slice at a time so a volume far larger than memory can be imported, and
commits each slice as its own transaction so a cancel or crash leaves whole slices.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ml.progress import CancelFn, ProgressFn, check_cancel, report

if TYPE_CHECKING:
    from ml.labels.store import LabelStore


def check_mapping(mapping: dict | None, n_classes: int) -> dict | None:
    """{source value: label value 0..C}; None means binary (0 -> 1, nonzero -> 2)."""
    if mapping is None:
        if n_classes < 2:
            raise ValueError("default import mapping (0 -> background, nonzero -> 2) needs 2 classes; pass mapping")
        return None
    if not isinstance(mapping, dict) or not mapping:
        raise TypeError(f"mapping must be a non-empty dict {{source value: label value}}, got {mapping!r}")
    for src, dst in mapping.items():
        if isinstance(dst, bool) or not isinstance(dst, (int, np.integer)) or not 0 <= dst <= n_classes:
            raise ValueError(f"mapping {src!r}: {dst!r}: label values must be ints 0..{n_classes} (0 = unlabeled)")
    return mapping


def map_slice(src: np.ndarray, mapping: dict | None) -> np.ndarray:
    """Source slice -> uint8 label slice; values missing from ``mapping`` become 0."""
    if mapping is None:
        return np.where(src != 0, np.uint8(2), np.uint8(1))
    if src.dtype in (np.uint8, np.bool_):
        lut = np.zeros(256, np.uint8)
        for k, v in mapping.items():
            if 0 <= k <= 255 and float(k) == int(k):
                lut[int(k)] = v
        return lut[src.astype(np.uint8)]
    out = np.zeros(src.shape, np.uint8)
    for k, v in mapping.items():
        out[src == k] = v
    return out


def import_slices(
    store: "LabelStore",
    array_like: Any,
    mapping: dict | None = None,
    merge: bool = False,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> None:
    """Write ``array_like`` (shape == store.shape, or (Y, X) for a one-slice store) into ``store``."""
    shape = tuple(int(s) for s in getattr(array_like, "shape", ()))
    two_d = len(shape) == 2 and store.shape[0] == 1
    if shape != store.shape and not (two_d and shape == store.shape[1:]):
        raise ValueError(f"dense labels have shape {shape}, the label store needs {store.shape}")
    n_classes = len(store.classes)
    mapping = check_mapping(mapping, n_classes)
    depth = store.shape[0]
    for z in range(depth):
        check_cancel(cancel)
        src = np.asarray(array_like if two_d else array_like[z])
        labels = map_slice(src, mapping)
        where = labels > 0 if merge else np.ones(labels.shape, bool)
        store._import_slice(z, labels, where, n_classes)
        report(progress, z + 1, depth, z=z)
