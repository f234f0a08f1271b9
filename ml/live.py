"""Live mode's numerical core: bring a draft model up to date with the newest labels in seconds,
then predict only what the user is looking at.

A live update is a short warm-start fine-tune through ``ml.train.train`` (so live and full
training share one training step): a few steps, part of every batch centred on the newest
stroke (``ml.dataset.FocusSampler``), BatchNorm on its running statistics. The view
prediction is cut from one window holding the model's receptive radius around the viewport,
its origin on the pooling grid, so it equals the whole-slice prediction there
(``tests/ml/test_live.py``). The settings were chosen by ``python -m bench.live``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ml.dataset import FocusSampler, Region
from ml.infer import _entropy, predict_image
from ml.io.normalize import normalize
from ml.progress import CancelFn, ProgressFn
from ml.settings import check_settings, number, whole
from ml.slice_context import with_neighbours
from ml.train import TRAIN_RANGES, TrainConfig, TrainResult, train

Box = tuple[int, int, int, int]      # y0, y1, x0, x1 (exclusive ends), in slice pixels


#: the LiveConfig fields handed to the fine-tune's TrainConfig as they are
_FROM_TRAINING = ("batch_size", "crop", "lr", "train_layers", "freeze_norm", "cpu_bf16")
#: the allowed values of every LiveConfig field (APP_LIVE is checked against them): training's for those it hands on
LIVE_RANGES = {**{k: TRAIN_RANGES[k] for k in _FROM_TRAINING},
               "steps": whole(0), "first_steps": whole(0), "focus": number(0, 1), "focus_pad": whole(0),
               "margin": whole(0), "max_view": whole(64)}


@dataclass(frozen=True)
class LiveConfig:
    """One live update's budget and the viewport it predicts (defaults: see docs/BENCHMARKS.md, "Live mode")."""

    steps: int = 16
    first_steps: int = 100        # a draft that starts from a model no label has trained yet (see ``first``)
    batch_size: int = 4
    crop: int = 128
    lr: float = 1e-3
    train_layers: str = "decoder"  # all layers at lr 1e-3 lost 0.08 view IoU over 5 strokes; the decoder gained
    freeze_norm: bool = True
    cpu_bf16: bool = True         # as TrainConfig.cpu_bf16: bf16 steps where the CPU has it (BENCHMARKS, "Live mode")
    focus: float = 0.5            # share of each batch centred on the newest stroke
    focus_pad: int = 64           # image context around the newest stroke's box
    margin: int = 32              # predicted beyond the visible area (a small pan needs no update)
    max_view: int = 768           # largest predicted side; a bigger view is cut around its centre

    def __post_init__(self) -> None:
        check_settings(vars(self), LIVE_RANGES, "live setting")

    @classmethod
    def from_dict(cls, values: dict | None) -> "LiveConfig":
        """From a JSON object (``APP_LIVE``); an unknown key names the known ones."""
        values = dict(values or {})
        check_settings(values, LIVE_RANGES, "live setting")
        return cls(**values)

    def train_config(self, seed: int = 0) -> TrainConfig:
        """The fine-tune as a TrainConfig: constant rate, no warm-up, no validation, no averaging."""
        return TrainConfig(steps=max(1, self.steps), val_fraction=0.0, seed=seed, cosine=False, warmup_steps=0,
                           ema=0.0, eval_every=max(1, self.steps), **{k: getattr(self, k) for k in _FROM_TRAINING})

    def first(self) -> "LiveConfig":
        """The budget of a draft's first update when it starts from a new or pre-trained model:
        more steps, every layer, and BatchNorm learning its statistics (nothing has set them for labels yet)."""
        return replace(self, steps=self.first_steps, freeze_norm=False, train_layers="all")


def fine_tune(model: nn.Module, regions: Sequence[Region], focus: Sequence[Region], config: LiveConfig,
              seed: int = 0, progress: ProgressFn = None, cancel: CancelFn = None,
              device: torch.device | str | None = None) -> TrainResult:
    """Warm-start ``model`` in place for ``config.steps`` steps on ``regions``, ``config.focus`` of
    each batch from ``focus``; ``steps=0`` returns it untouched. Raises Cancelled like ``train``."""
    if config.steps == 0:
        return TrainResult(model.eval(), [], None, None)
    tcfg = config.train_config(seed)
    sampler = FocusSampler(regions, focus, config.focus, tcfg.crop, tcfg.augment, seed, balance=tcfg.balance)
    return train(model, regions, [], tcfg, progress=progress, cancel=cancel, device=device, sampler=sampler)


def focus_box(bbox: Sequence[int], shape2d: tuple[int, int], pad: int) -> Box:
    """The newest stroke's box grown by ``pad`` px of context, clipped to the slice."""
    h, w = shape2d
    y0, y1, x0, x1 = (int(v) for v in bbox)
    return max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)


def focus_regions(volume: Any, store: Any, z: int, bbox: Sequence[int], lo: float, hi: float,
                  pad: int = 64) -> list[Region]:
    """The labels around the newest stroke (all classes, not only the stroke's) as training regions."""
    y0, y1, x0, x1 = focus_box(bbox, tuple(volume.shape[1:]), pad)
    labels = np.asarray(store.read(int(z), y0, y1, x0, x1), dtype=np.uint8)
    if not labels.any():
        return []
    return [Region(normalize(volume[int(z), y0:y1, x0:x1], lo, hi), labels, int(z), y0, x0)]


def view_box(shape2d: tuple[int, int], view: Sequence[float] | None, margin: int = 32, max_view: int = 768,
             centre: tuple[float, float] | None = None) -> Box:
    """Slice pixels to predict for a view ``(x0, x1, y0, y1)`` in figure coordinates (None = whole slice).

    The visible area plus ``margin``, clipped to the slice; a side longer than ``max_view`` is cut
    to ``max_view`` around ``centre`` (row, column; e.g. the newest stroke) when it is in view,
    else around the view's centre, so a zoomed-out view costs a bounded time.
    """
    h, w = shape2d
    if view is None:
        vx0, vx1, vy0, vy1 = -0.5, w - 0.5, -0.5, h - 0.5
    else:
        vx0, vx1, vy0, vy1 = (float(v) for v in view)
    ys = sorted((vy0 + 0.5, vy1 + 0.5))
    xs = sorted((vx0 + 0.5, vx1 + 0.5))
    inside = centre is not None and ys[0] <= centre[0] <= ys[1] and xs[0] <= centre[1] <= xs[1]
    cy, cx = centre if inside else ((ys[0] + ys[1]) / 2, (xs[0] + xs[1]) / 2)
    return (*_side(ys, cy, h, margin, max_view), *_side(xs, cx, w, margin, max_view))


def _side(span: Sequence[float], centre: float, size: int, margin: int, max_len: int) -> tuple[int, int]:
    a, b = max(0, math.floor(span[0]) - margin), min(size, math.ceil(span[1]) + margin)
    if b - a > max_len:
        a = int(np.clip(round(centre - max_len / 2), max(0, a), max(0, b - max_len)))
        b = a + max_len
    if b <= a:                             # a view entirely off the slice: its nearest edge
        a = min(max(0, a), size - 1)
        b = a + 1
    return a, b


def input_window(box: Box, shape2d: tuple[int, int], context: int, multiple: int) -> Box:
    """``box`` grown by ``context`` (rounded up to ``multiple``), start on the pooling grid, clipped."""
    h, w = shape2d
    ctx = math.ceil(context / multiple) * multiple
    y0, y1, x0, x1 = box
    iy0, ix0 = max(0, (y0 - ctx) // multiple * multiple), max(0, (x0 - ctx) // multiple * multiple)
    return iy0, min(h, y1 + ctx), ix0, min(w, x1 + ctx)


def predict_view(model: nn.Module, volume: Any, z: int, box: Box, lo: float, hi: float,
                 device: torch.device | str | None = None) -> dict[str, np.ndarray]:
    """``prob`` (C, h, w) and ``entropy`` (h, w) float32 of slice ``z`` inside ``box``, equal to what
    a whole-slice prediction gives there; reads only the box and its context."""
    volume = with_neighbours(volume, model)
    shape2d = tuple(int(s) for s in volume.shape[1:])
    iy0, iy1, ix0, ix1 = input_window(box, shape2d, int(getattr(model, "receptive_radius", 0)),
                                      int(getattr(model, "multiple", 1)))
    image = normalize(volume[int(z), iy0:iy1, ix0:ix1], lo, hi)
    out = predict_image(model, image, tile=max(image.shape), device=device, context=0)
    y0, y1, x0, x1 = box
    prob = out["prob"][:, y0 - iy0:y1 - iy0, x0 - ix0:x1 - ix0]
    entropy = _entropy(torch.from_numpy(prob[None]))[0].numpy().astype(np.float32)
    return {"prob": np.ascontiguousarray(prob), "entropy": entropy}

