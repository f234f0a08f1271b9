"""How good a model version is: an honest quality estimate, validation IoU, IoU against ground truth.

The quality estimate (``ml.quality``) is what the page shows a model with: the expected IoU
over sampled slices of the user's volume, recalibrated on the held-out labels, or "not
estimated" with the reason when the held-out labels cannot check it (e.g. strokes that never
touch a boundary: on those the held-out IoU said 1.000 for a 0.169 model).
Validation IoU is foreground IoU on labeled regions held out of training; it picks the best
checkpoint and draws the training curve, and measures easy pixels only. When those
regions hold no foreground label it measures nothing (``ml.train.evaluate`` reports 0.0 as
soon as the model predicts any foreground on them), so the app stores and shows it as
None / "n/a" instead. Ground-truth IoU uses a fixed central slab of the first volume that
has reference labels, so every version of a project is scored on the same pixels, in z consensus
with the slab's neighbours as the volume's prediction is read (``ml.z_consensus``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from app.services import projects

EVAL_SLAB_SLICES = 3         # ground-truth IoU: central slices ...
EVAL_SLAB_PX = 512           # ... centre crop of at most this many pixels per side
QUALITY_SLICES = 4           # quality estimate: evenly spaced slices of the first volume ...
QUALITY_PX = 1024            # ... centre crop of at most this many pixels per side


def has_foreground(regions: list) -> bool:
    """Whether any region holds a foreground label (value >= 2; 1 is background, 0 unlabeled)."""
    return any(bool((np.asarray(r.labels) >= 2).any()) for r in regions)


def split_for_validation(regions: list, tcfg: Any) -> tuple[list, list, bool]:
    """``(train, val, val_has_foreground)``: the split ``ml.train.train`` makes itself, done here so
    the app knows whether validation IoU can mean anything."""
    from ml.dataset import split_regions

    train_regions, val_regions = split_regions(regions, tcfg.val_fraction, tcfg.seed)
    return train_regions, val_regions, has_foreground(val_regions)


def without_val_iou(history: list[dict]) -> list[dict]:
    """History entries with ``val_iou`` removed (validation had no foreground to measure)."""
    return [{k: v for k, v in h.items() if k != "val_iou"} for h in history]


def val_iou_missing_reason(metrics: dict) -> str:
    """Why a version has no validation IoU (for the status line)."""
    if metrics.get("val_foreground") is False:
        return "the held-out validation labels contain no foreground"
    return "no validation labels were held out"


def eval_slab(shape: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """The fixed evaluation slab: central slices, central crop (same for every version)."""
    z, h, w = shape
    nz = min(EVAL_SLAB_SLICES, z)
    z0 = (z - nz) // 2
    ch, cw = min(EVAL_SLAB_PX, h), min(EVAL_SLAB_PX, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return slice(z0, z0 + nz), slice(y0, y0 + ch), slice(x0, x0 + cw)


def ground_truth_iou(config: Any, project_id: int, model: Any, device=None) -> dict | None:
    """Foreground IoU on the eval slab of the first volume with ground truth, else None."""
    from ml.infer import predict_image
    from ml.io.normalize import normalize
    from ml.metrics import iou
    from ml.predicted_class import predicted_class
    from ml.slice_context import with_neighbours
    from ml.z_consensus import smooth_z

    for v in projects.list_volumes(config, project_id):
        gt = projects.open_ground_truth(config, v["id"])
        if gt is None:
            continue
        volume = with_neighbours(projects.open_volume(config, v["id"]), model)
        zs, ys, xs = eval_slab(tuple(v["shape"]))
        lo, hi = float(v["lo"]), float(v["hi"])
        z0, z1 = max(0, zs.start - 1), min(int(v["shape"][0]), zs.stop + 1)   # the slab and its neighbours
        prob = np.stack([predict_image(model, normalize(volume[z, ys, xs], lo, hi), device=device)["prob"]
                         for z in range(z0, z1)], axis=1)
        preds = predicted_class(smooth_z(prob, config.z_consensus, axis=1)[:, zs.start - z0:zs.stop - z0]) > 0
        truths = np.stack([np.asarray(gt[z, ys, xs]) > 0 for z in range(zs.start, zs.stop)])
        return {"gt_iou": float(iou(preds, truths)), "gt_volume_id": v["id"],
                "gt_slab": [zs.start, zs.stop, ys.start, ys.stop, xs.start, xs.stop]}
    return None


def quality_images(config: Any, project_id: int, model: Any, n: int = QUALITY_SLICES,
                   side: int = QUALITY_PX) -> list[np.ndarray]:
    """Normalised central crops of ``n`` evenly spaced slices of the project's first volume, read as
    ``model`` reads them (with their neighbours for a 2.5D model)."""
    from ml.io.normalize import normalize
    from ml.slice_context import with_neighbours

    vols = projects.list_volumes(config, project_id)
    if not vols:
        return []
    v = vols[0]
    z, h, w = v["shape"]
    volume = with_neighbours(projects.open_volume(config, v["id"]), model)
    ch, cw = min(side, h), min(side, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    zs = sorted({int(round(t)) for t in np.linspace(0, z - 1, min(n, z) + 2)[1:-1]}) or [0]
    return [normalize(volume[k, y0:y0 + ch, x0:x0 + cw], float(v["lo"]), float(v["hi"])) for k in zs]


def quality(config: Any, project_id: int, model: Any, heldout: list, device=None) -> dict:
    """The stored form of ``ml.quality.estimate_quality`` for a freshly trained model."""
    from ml.quality import estimate_quality

    return estimate_quality(model, quality_images(config, project_id, model), heldout, device).to_dict()


#: said after the estimate of a version stored before v41, read after its self-training: bench.quality v4
#: (docs/BENCHMARKS.md) measured its low end above the true IoU of the slices it reads in 8 of 9 runs.
SELF_TRAINED_CAVEAT = ("; after self-training read it as an upper bound: on VNC it ran 0.04 high on average, "
                       "up to 0.13")
#: said after the estimate of a version that self-trained from its first step (a continued one: no model before
#: its self-training exists): bench.quality v5 --continue-from measured its low end above the truth in 4 of 6 runs.
CONTINUED_CAVEAT = ("; read after self-training (a continued version has no model before it), so it may run high: "
                    "on VNC up to 0.07 above the truth, 0.02 on average")
#: said after an estimate read from the model before its self-training (a new version): bench.quality v5 measured
#: its low end at most 0.035 above the final model's true IoU of the slices it reads, 0.054 below on average.
BEFORE_SELF_TRAINING = ("; read from the model before self-training, so a floor: on VNC at most 0.04 above the "
                        "truth, 0.05 below on average")


def quality_text(metrics: dict) -> str:
    """The quality line of a version ("estimated IoU 0.62 (on ...)" / "quality not estimated: ..."). A model
    that self-trained learned its own sure pixels of the very slices the estimate reads, so its probabilities
    claim more than they are right: a new version's estimate is read before that, and the line says which."""
    from ml.quality import QualityEstimate

    q = metrics.get("quality")
    if not q:
        return "quality not estimated (trained before estimates existed)"
    estimate = QualityEstimate.from_dict(q)
    if estimate.iou is None or not metrics.get("self_training"):
        return estimate.text()
    before = metrics.get("quality_before_self_training")            # None: stored before v41 recorded it
    return estimate.text() + {True: BEFORE_SELF_TRAINING, False: CONTINUED_CAVEAT, None: SELF_TRAINED_CAVEAT}[before]
