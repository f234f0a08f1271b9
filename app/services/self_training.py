"""The self-training phase of a training job: the project's volumes, pseudo-labeled by the model being trained.

``ml.self_training`` does the work; this module knows the project (its volumes, their intensity
range, the APP_SELF_TRAIN settings) and shares the pixel budget among the volumes, so a project of
many volumes holds no more pseudo-labels in memory than one.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from app.services import projects


def settings(config: Any):
    """The project's :class:`ml.self_training.SelfTrainConfig` (APP_SELF_TRAIN overrides, checked at start)."""
    from ml.self_training import SelfTrainConfig

    return SelfTrainConfig.from_dict(config.extra.get("self_train"))


def pseudo_regions_for(config: Any, project_id: int, model: Any, held_out: list, known: list, device: Any = None,
                       seed: int = 0, cancel: Any = None, max_seconds: float | None = None) -> list:
    """Pseudo-labeled windows of every volume of the project (held-out windows and labeled pixels spared),
    within the pixel budget and, for a time budget, ``max_seconds``."""
    from ml.self_training import pseudo_regions, window_boxes

    cfg = settings(config)
    vols = projects.list_volumes(config, project_id)
    share = replace(cfg, max_pixels=max(cfg.window ** 2, cfg.max_pixels // max(1, len(vols))))
    out: list = []
    start = time.monotonic()
    for v in vols:
        left = None if max_seconds is None else max(0.0, max_seconds - (time.monotonic() - start))
        if left == 0.0 and out:
            break
        volume = projects.open_volume(config, v["id"])
        boxes = window_boxes(volume.shape, share, seed)
        out += pseudo_regions(model, volume, v["lo"], v["hi"], boxes, cfg, held_out, known, device, cancel, left)
    return out


def summary(regions: list, steps: int) -> dict:
    """What the self-training phase learned from, for the version's metrics."""
    total = sum(r.labels.size for r in regions)
    labeled = sum(int(np.count_nonzero(r.labels)) for r in regions)
    objects = sum(int(np.count_nonzero(r.labels > 1)) for r in regions)
    return {"steps": int(steps), "windows": len(regions), "pixels": int(total),
            "labeled_share": round(labeled / total, 3) if total else 0.0,
            "object_share": round(objects / total, 3) if total else 0.0}


def note(stats: dict | None) -> str:
    """The version list's word on it: how many steps saw pseudo-labels, and how much of the volume they covered."""
    if not stats or not stats.get("steps"):
        return ""
    return (f"self-trained {stats['steps']} steps on pseudo-labels "
            f"({stats['labeled_share']:.0%} of {stats['pixels'] / 1e6:.1f} Mpx)")
