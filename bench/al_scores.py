"""What the active-learning protocol measures: the test half's scores (each slice alone and in z consensus)
and what a draw of patches holds."""
from __future__ import annotations

import numpy as np

from ml.active import Patch
from ml.metrics import confusion, count_metrics
from ml.z_consensus import neighbours, slice_consensus

from .al_protocol import BenchData


def slice_counts(pred: np.ndarray, data: BenchData, z: int) -> np.ndarray:
    """(tp, fp, fn, tn) of ``pred``, a mask predicted for ``data.scored(z)``, against the truth there."""
    return np.array(confusion(pred, data.mask[z, data.split_y:]), np.int64)


def count_scores(counts: np.ndarray) -> dict[str, float]:
    """Foreground IoU (``iou``) and mean IoU of the two classes (``miou``) from summed (tp, fp, fn, tn).

    ``miou`` is only for comparing with papers that average background in (it flatters a 5 %
    foreground: background IoU is ~0.95).
    """
    tp, fp, fn, tn = (int(c) for c in counts)
    iou = count_metrics(tp, fp, fn)["iou"]
    bg = count_metrics(tn, fn, fp)["iou"]           # background's IoU: its true positives are tn
    return {"iou": iou, "miou": (iou + bg) / 2}


def heldout_scores(predict_fg, data: BenchData) -> dict[str, float]:
    """The scores of the test half's eval slices (``count_scores`` of their summed counts);
    ``predict_fg(image2d) -> bool mask``."""
    return count_scores(sum(slice_counts(predict_fg(data.scored(z)), data, z) for z in data.eval_z))


def heldout_prob_scores(predict_prob, data: BenchData, weight: float) -> dict[str, float]:
    """``heldout_scores`` of p(mito) > 0.5 (``iou``, ``miou``) and of its z consensus (``iou_z``, ``miou_z``: each
    scored slice mixed with its neighbours' predictions by ``weight``, as the app reads a prediction);
    ``predict_prob(image2d) -> p(mito)``, each slice predicted once."""
    probs: dict[int, np.ndarray] = {}

    def prob(z: int) -> np.ndarray:
        if z not in probs:
            probs[z] = predict_prob(data.scored(z))
        return probs[z]
    raw = cons = np.zeros(4, np.int64)
    for z in data.eval_z:
        z0, z1 = neighbours(z, data.image.shape[0])
        stack = np.stack([prob(k) for k in range(z0, z1)])
        raw = raw + slice_counts(prob(z) > 0.5, data, z)
        cons = cons + slice_counts(slice_consensus(stack, z, z0, weight, axis=0) > 0.5, data, z)
    mixed = count_scores(cons)
    return {**count_scores(raw), "iou_z": mixed["iou"], "miou_z": mixed["miou"]}


def fg_share(mask: np.ndarray, patches: list[Patch]) -> float:
    """Share of patches holding any mitochondria in ``mask`` (class imbalance diagnostic)."""
    if not patches:
        return 0.0
    return float(np.mean([mask[p.window].any() for p in patches]))


def fg_pixels(mask: np.ndarray, patches: list[Patch]) -> float:
    """Share of the patches' pixels that are mitochondria: how much a draw gives the model to learn."""
    if not patches:
        return 0.0
    return float(np.mean([(mask[p.window] > 0).mean() for p in patches]))
