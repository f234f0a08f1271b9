"""New models: the device jobs run on, the architecture of a new model, a seeded new model.

Asked by training, pre-training, active learning, segmentation and live mode alike.
"""
from __future__ import annotations

from typing import Any

DEFAULT_ARCH = {"base": 16, "depth": 4}
SCRATCH = "scratch"          # provenance of a model that started from random weights


def device_for(config: Any):
    from ml.device import pick_device

    return pick_device(config.device_preference)


def architecture(config: Any) -> dict:
    """UNet2D size for new models: ``config.extra["model"]`` overrides base/depth/dropout."""
    return {**DEFAULT_ARCH, **dict(config.extra.get("model", {}))}


def new_model(config: Any, n_classes: int, seed: int = 0):
    """A freshly initialised (seeded, so reproducible) U-Net for ``n_classes`` classes."""
    import torch

    from ml.model import UNet2D

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2D(n_classes=int(n_classes), **architecture(config))
