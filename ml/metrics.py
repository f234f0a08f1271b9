"""Overlap metrics for binary segmentation (nonzero = foreground), optionally on a pixel mask.

Convention for empty cases: when prediction and ground truth are both empty (in the
evaluated pixels) every metric is 1.0 (nothing to find, nothing wrongly found); when a
ratio's denominator is zero otherwise, it is 0.0 (as sklearn's ``zero_division=0``).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def confusion(pred: Any, gt: Any, mask: Any = None) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) over the evaluated pixels: sum them over slices to score a volume piece by piece."""
    p = np.asarray(pred)
    g = np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    p = p != 0
    g = g != 0
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != p.shape:
            raise ValueError(f"mask must have the shape of pred/gt {p.shape}, got {m.shape}")
        m = m != 0
        p, g = p[m], g[m]
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p & ~g))
    fn = int(np.count_nonzero(~p & g))
    tn = int(p.size - tp - fp - fn)
    return tp, fp, fn, tn


def _ratio(num: int, den: int, both_empty: bool) -> float:
    if both_empty:
        return 1.0
    return num / den if den else 0.0


def count_metrics(tp: int, fp: int, fn: int) -> dict[str, float]:
    """iou, dice, precision, recall from counts (summed over slices, they score a whole volume)."""
    empty = tp + fp + fn == 0
    return {
        "iou": _ratio(tp, tp + fp + fn, empty),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, empty),
        "precision": _ratio(tp, tp + fp, empty),
        "recall": _ratio(tp, tp + fn, empty),
    }


def iou(pred: Any, gt: Any, mask: Any = None) -> float:
    """Jaccard index |P & G| / |P | G|."""
    tp, fp, fn, _ = confusion(pred, gt, mask)
    return count_metrics(tp, fp, fn)["iou"]


def dice(pred: Any, gt: Any, mask: Any = None) -> float:
    """Dice / F1: 2|P & G| / (|P| + |G|)."""
    tp, fp, fn, _ = confusion(pred, gt, mask)
    return count_metrics(tp, fp, fn)["dice"]


def precision(pred: Any, gt: Any, mask: Any = None) -> float:
    """|P & G| / |P|: how much of the prediction is right."""
    tp, fp, fn, _ = confusion(pred, gt, mask)
    return count_metrics(tp, fp, fn)["precision"]


def recall(pred: Any, gt: Any, mask: Any = None) -> float:
    """|P & G| / |G|: how much of the ground truth is found."""
    tp, fp, fn, _ = confusion(pred, gt, mask)
    return count_metrics(tp, fp, fn)["recall"]


def all_metrics(pred: Any, gt: Any, mask: Any = None) -> dict[str, float | int]:
    """iou, dice, precision, recall, accuracy and the raw counts tp/fp/fn/tn in one pass."""
    tp, fp, fn, tn = confusion(pred, gt, mask)
    out: dict[str, float | int] = dict(count_metrics(tp, fp, fn))
    n = tp + fp + fn + tn
    out["accuracy"] = (tp + tn) / n if n else 1.0
    out.update(tp=tp, fp=fp, fn=fn, tn=tn)
    return out
