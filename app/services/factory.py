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
    """UNet2D arguments for new models: ``config.extra["model"]`` overrides base/depth/dropout, and its
    ``z_radius`` (slices read either side of each, ``ml.slice_context``) sets the input channels."""
    from ml.slice_context import channels_for

    arch = {**DEFAULT_ARCH, **dict(config.extra.get("model", {}))}
    radius = arch.pop("z_radius", 0)
    return {**arch, "in_channels": channels_for(radius)}


def new_model(config: Any, n_classes: int, seed: int = 0, **overrides: Any):
    """A freshly initialised (seeded, so reproducible) U-Net for ``n_classes`` classes (``overrides``
    replace architecture keys: a pre-trained body reads one slice whatever new models read)."""
    import torch

    from ml.model import UNet2D

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2D(n_classes=int(n_classes), **{**architecture(config), **overrides})
