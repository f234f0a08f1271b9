"""A slice read with its neighbours as input channels (2.5D): what a model with ``in_channels`` > 1 sees.

Serial-section EM cuts a mitochondrion into several 45 nm sections; a 2D model sees one of them
and must guess where an outline fades. A model given the sections either side can look instead.
The number of input channels says how far it looks (``z_radius``: 1 channel = the slice alone,
3 = one neighbour either side), so a checkpoint carries its own answer and nothing else has to.

``NeighbourStack`` wraps a (Z, Y, X) volume so that ``stack[z, ys, xs]`` reads ``(2r+1, h, w)``:
code that crops a volume by slice (training regions, tiled inference, AL scoring, pseudo-labels)
works unchanged on it. Neighbours are clamped at the volume's ends (the first slice stands in for
the missing one before it), the one rule of which slices a pixel sees.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn

from ml.settings import whole

#: how far a model may look (APP_MODEL's ``z_radius``): 0 each slice alone, r the r slices either side
RADIUS_RANGE = whole(0)


def channels_for(radius: int) -> int:
    """Input channels of a model that reads ``radius`` slices either side of each slice."""
    return 2 * int(radius) + 1


def z_radius(model: nn.Module) -> int:
    """Slices either side that ``model`` reads: ``(in_channels - 1) // 2`` (0 for a 2D model)."""
    channels = int(getattr(model, "config", {}).get("in_channels", 1))
    if channels % 2 == 0:
        raise ValueError(f"a model reading neighbour slices needs an odd channel count, got {channels}")
    return (channels - 1) // 2


def neighbour_slices(z: int, depth: int, radius: int) -> list[int]:
    """Slices ``z - radius .. z + radius``, clamped to ``0 .. depth - 1``."""
    if not 0 <= z < depth:
        raise IndexError(f"slice {z} is outside a volume of {depth} slices")
    return [min(max(k, 0), depth - 1) for k in range(z - radius, z + radius + 1)]


def as_channels(image: Any) -> np.ndarray:
    """``image`` as (C, H, W): a 2D slice becomes one channel, a stack stays as it is."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image[None]
    if image.ndim != 3:
        raise ValueError(f"an image must be (H, W) or (C, H, W), got shape {image.shape}")
    return image


class NeighbourStack:
    """A (Z, Y, X) volume read slice by slice as ``(2 * radius + 1, h, w)`` stacks (see the module).

    Whole slices (``stack[z]``) are kept for the next reads, the last ``2 * radius + 1`` only, so a sweep
    through the volume (a whole-volume prediction) reads each slice once, and memory stays one stack.
    """

    def __init__(self, volume: Any, radius: int):
        if int(radius) < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        if len(volume.shape) != 3:
            raise ValueError(f"NeighbourStack needs a (Z, Y, X) volume, got shape {tuple(volume.shape)}")
        self.volume, self.radius = volume, int(radius)
        self.shape = tuple(int(s) for s in volume.shape)
        self._recent: OrderedDict[int, np.ndarray] = OrderedDict()

    def percentiles(self, *args, **kwargs):
        """The wrapped volume's intensity window (so scoring and training normalise it the same way)."""
        return self.volume.percentiles(*args, **kwargs)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        z, rest = key[0], key[1:]
        if not isinstance(z, (int, np.integer)):
            raise TypeError(f"a NeighbourStack is read one slice at a time, got {z!r}")
        ks = neighbour_slices(int(z), self.shape[0], self.radius)
        if rest:
            return np.stack([np.asarray(self.volume[(k,) + rest]) for k in ks])
        return np.stack([self._whole(k) for k in ks])

    def _whole(self, k: int) -> np.ndarray:
        """Slice ``k``, from the last ``2 * radius + 1`` whole slices read when it is one of them."""
        if k not in self._recent:
            self._recent[k] = np.asarray(self.volume[k])
            while len(self._recent) > channels_for(self.radius):
                self._recent.popitem(last=False)
        return self._recent[k]


def with_radius(volume: Any, radius: int) -> Any:
    """``volume`` read ``radius`` slices either side: itself for 0, a ``NeighbourStack`` otherwise."""
    return NeighbourStack(volume, radius) if radius else volume


def with_neighbours(volume: Any, model: nn.Module) -> Any:
    """``volume`` as ``model`` reads it: itself for a 2D model, a ``NeighbourStack`` otherwise (a stack
    already read so is returned as it is, so every function given a model and a volume may call this)."""
    radius = z_radius(model)
    if isinstance(volume, NeighbourStack):
        if volume.radius != radius:
            raise ValueError(f"the volume is read {volume.radius} slice(s) either side; the model reads {radius}")
        return volume
    return with_radius(volume, radius)


def widen_first_conv(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A one-channel first convolution given ``channels`` inputs: the centre slice keeps its weights,
    the neighbours start at zero, so the wider model first computes exactly what the 2D one did
    (a body pre-trained on single slices starts a 2.5D model without changing its first answer)."""
    if weight.shape[1] != 1 or channels % 2 == 0:
        raise ValueError(f"can widen a one-channel weight to an odd channel count, got {tuple(weight.shape)} "
                         f"to {channels}")
    out = weight.new_zeros((weight.shape[0], channels) + tuple(weight.shape[2:]))
    out[:, channels // 2] = weight[:, 0]
    return out
