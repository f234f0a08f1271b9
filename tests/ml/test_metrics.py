"""Overlap metrics against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from ml.metrics import all_metrics, dice, iou, precision, recall

# pred: 1 1 1 0 0 0      tp = 2 (positions 1, 2), fp = 1 (position 0)
# gt:   0 1 1 1 1 0      fn = 2 (positions 3, 4), tn = 1 (position 5)
PRED = np.array([1, 1, 1, 0, 0, 0])
GT = np.array([0, 1, 1, 1, 1, 0])


def test_hand_computed_values():
    assert iou(PRED, GT) == pytest.approx(2 / 5)
    assert dice(PRED, GT) == pytest.approx(4 / 7)
    assert precision(PRED, GT) == pytest.approx(2 / 3)
    assert recall(PRED, GT) == pytest.approx(2 / 4)
    m = all_metrics(PRED, GT)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 2, 1)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["iou"] == pytest.approx(0.4) and m["dice"] == pytest.approx(4 / 7)


def test_mask_restricts_evaluated_pixels():
    mask = np.array([0, 1, 1, 1, 0, 1], bool)  # drops the fp at 0 and the fn at 4
    m = all_metrics(PRED, GT, mask=mask)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 0, 1, 1)
    assert iou(PRED, GT, mask) == pytest.approx(2 / 3)
    assert precision(PRED, GT, mask) == 1.0


def test_nonzero_is_foreground_and_2d_works():
    pred = np.array([[0, 255], [255, 255]], np.uint8)
    gt = np.array([[0, True], [False, True]])
    assert iou(pred, gt) == pytest.approx(2 / 3)


def test_empty_cases():
    z = np.zeros(5)
    assert all(v == 1.0 for k, v in all_metrics(z, z).items() if k in ("iou", "dice", "precision", "recall"))
    one = np.array([0, 0, 1, 0, 0])
    assert iou(z, one) == 0.0 and recall(z, one) == 0.0 and precision(z, one) == 0.0
    assert iou(one, z) == 0.0 and precision(one, z) == 0.0 and recall(one, z) == 0.0
    assert iou(one, one, mask=np.zeros(5)) == 1.0  # nothing evaluated


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        iou(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="mask"):
        all_metrics(np.zeros(3), np.zeros(3), mask=np.zeros(2))
