"""Self-training: a model also learns from its own confident predictions on unlabeled pixels.

Measured first (``python -m bench.self_train``, docs/BENCHMARKS.md "v9 probe"): a first model of
20 patches trained 500 more steps with pseudo-labels of the unlabeled pool reached 0.624 IoU on
the protocol's test half against 0.565 for the same steps on its labels alone (dev split: 0.730
against 0.692). A pixel is pseudo-labeled with a class when the model gives it a probability
above ``fg`` (any object class) or ``bg`` (background, class 0, the common one: stricter);
everything else stays unlabeled. Half of every batch stays on the true labels
(:class:`~ml.dataset.FocusSampler`), so the user's strokes keep the last word.

Memory stays bounded on volumes larger than RAM: pseudo-labels cover at most ``max_pixels``
pixels, in windows read one at a time with the model's context (:func:`ml.live.predict_view`:
the same probabilities as a whole-slice prediction).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ml.dataset import FocusSampler, Region
from ml.infer import tile_plan
from ml.io.normalize import normalize
from ml.live import predict_view
from ml.predicted_class import predicted_class
from ml.progress import CancelFn, Cancelled, ProgressFn, check_cancel, report
from ml.settings import FLAG, check_settings, number, whole
from ml.slice_context import with_neighbours
from ml.train import TrainConfig, TrainResult, train
from ml.z_consensus import neighbours, slice_consensus

Box = tuple[int, int, int, int]          # y0, y1, x0, x1


_PROB = number(0.5, 1, high_open=True)
_SHARE = number(0, 1, low_open=True, high_open=True)
SELF_TRAIN_RANGES = {"enabled": FLAG, "fg": _PROB, "bg": _PROB, "bg_share": number(0, 1, low_open=True),
                     "z_consensus": number(0, 0.5, high_open=True),
                     "share": _SHARE, "steps_share": _SHARE,
                     "min_steps": whole(0), "min_dense": number(0, 1), "time_share": _SHARE, "window": whole(16),
                     "max_pixels": whole(256), "rounds": whole(1)}
#: the settings that switch the gate (``min_steps``, ``min_dense``) off: for benchmarks that measure the gate
GATE_OFF = {"min_steps": 0, "min_dense": 0.0}
Z_RUN = 4                         # with a z consensus, pseudo-labeled windows come in runs of this many slices


@dataclass(frozen=True)
class SelfTrainConfig:
    enabled: bool = True
    fg: float = 0.8                 # pseudo-label an object class above this probability (v10 probe: 0.8 > 0.9)
    bg: float = 0.99                # ... background above this one
    bg_share: float = 1.0           # ... and only on this share of the pixels predicted background, the surest
                                    # (1: all above ``bg``). v29: a first model labels 4-24 % of the mitochondria
                                    # background at 0.99; 0.8 cut that to 1-7 % but dropped the hard negatives
                                    # too (precision -0.068, recall +0.040, IoU -0.029), so 1 stays
    z_consensus: float = 0.0        # pseudo-label a window's probabilities mixed with the slices above and below
                                    # (``ml.z_consensus``; 0: the slice alone). 0.25: +0.026 IoU over nine dev seeds
                                    # (v30), but on the test half -0.019 for the first models, -0.013 at 100 (v31)
    share: float = 0.5              # part of every batch drawn from the true labels
    steps_share: float = 1 / 3      # part of a new model's steps trained with pseudo-labels (the probe: 500 of 1,500)
    min_steps: int = 500            # ... and only after this many steps on the labels alone: a model of 167 steps
                                    # lost 0.04-0.08 IoU to its own pseudo-labels, one of 1,000 gained 0.09
    min_dense: float = 0.5          # at least this share of the labels in completely labeled patches (it helped
                                    # there; a model of 9 strokes learned its mistakes: demo IoU 0.28 vs 0.42)
    time_share: float = 0.15        # at most this part of a time budget goes to pseudo-labeling
    window: int = 512               # pseudo-labeled windows (px), read and predicted one at a time
    max_pixels: int = 16 * 2**20    # at most this many pseudo-labeled pixels (memory: ~5 bytes each; with
                                    # bg_share < 1 also their probabilities until labeled, 4 bytes a class)
    rounds: int = 1                 # the self-training steps in this many equal rounds, the pool labeled again
                                    # by the model as it is before each (bench.initial_steps --self-rounds)

    def __post_init__(self) -> None:
        check_settings(asdict(self), SELF_TRAIN_RANGES, "self-training setting")
        if self.max_pixels < self.window:
            raise ValueError(f"self-training max_pixels={self.max_pixels} is below one window ({self.window} px)")

    @classmethod
    def from_dict(cls, values: dict | None) -> "SelfTrainConfig":
        """From a settings object (APP_SELF_TRAIN), unknown keys refused by name."""
        check_settings(values or {}, SELF_TRAIN_RANGES, "self-training setting")
        return cls(**(values or {}))

    def self_steps(self, steps: int, warm: bool, dense_share: float = 1.0) -> int:
        """Steps of a run trained with pseudo-labels: all of a warm start's (its start model labels the
        pool), the last ``steps_share`` of a new model's if the steps before them reach ``min_steps``;
        none when less than ``min_dense`` of the labels are completely labeled patches
        (``ml.quality.dense_share``). Where it was measured to help, and only there: a model must be
        good before its sure pixels are worth learning."""
        if not self.enabled or dense_share < self.min_dense:
            return 0
        if warm:
            return int(steps)
        n = int(round(steps * self.steps_share))
        return n if steps - n >= self.min_steps else 0


def background_threshold(probs: Sequence[np.ndarray], config: SelfTrainConfig) -> float:
    """p(background) above which a pixel is pseudo-labeled background: ``config.bg``, raised to keep only the
    surest ``config.bg_share`` of the pixels predicted background in ``probs`` ((C, H, W) each)."""
    if config.bg_share >= 1:
        return config.bg
    p_bg = np.concatenate([p[0][predicted_class(p) == 0] for p in probs]) if probs else np.zeros(0, np.float32)
    if p_bg.size == 0:
        return config.bg
    return max(config.bg, float(np.quantile(p_bg, 1.0 - config.bg_share)))


def pseudo_labels(prob: np.ndarray, fg: float, bg: float) -> np.ndarray:
    """uint8 labels (0 unlabeled, c + 1 for class c) where ``prob`` (C, H, W) is confident enough."""
    labels = np.zeros(prob.shape[1:], np.uint8)
    for c in range(prob.shape[0]):
        labels[prob[c] > (bg if c == 0 else fg)] = c + 1     # thresholds >= 0.5: one class at most
    return labels


def window_boxes(shape: Sequence[int], config: SelfTrainConfig, seed: int = 0,
                 rows: tuple[int, int] | None = None) -> list[tuple[int, Box]]:
    """``(z, box)`` windows tiling every slice (only ``rows`` y0..y1 when given); a seeded subset
    within ``config.max_pixels``, spread over the whole volume.

    With ``config.z_consensus`` the subset is drawn in runs of ``Z_RUN`` slices of one box: a window read
    with its neighbours costs three predictions alone, (run + 2) / run in a run (``window_probs``)."""
    z, h, w = (int(s) for s in shape)
    y_lo, y_hi = rows or (0, h)
    tiles = [(a + y_lo, b + y_lo) for a, b in tile_plan(y_hi - y_lo, config.window)]
    run = Z_RUN if config.z_consensus else 1
    units = [[(k, (y0, y1, x0, x1)) for k in range(k0, min(z, k0 + run))] for k0 in range(0, z, run)
             for y0, y1 in tiles for x0, x1 in tile_plan(w, config.window)]
    order = np.random.default_rng(seed).permutation(len(units))
    out, total = [], 0
    for i in order:
        for k, (y0, y1, x0, x1) in units[i]:
            size = (y1 - y0) * (x1 - x0)
            if total + size > config.max_pixels:
                return sorted(out)
            out.append((k, (y0, y1, x0, x1)))
            total += size
    return sorted(out)


def _blank(labels: np.ndarray, z: int, box: Box, regions: Sequence[Region], whole: bool) -> None:
    """Unlabel pseudo-labels under ``regions`` of slice ``z``: their whole window (``whole``), else their
    labeled pixels only."""
    y0, y1, x0, x1 = box
    for r in regions:
        if r.z != z:
            continue
        ry1, rx1 = r.y0 + r.labels.shape[0], r.x0 + r.labels.shape[1]
        a, b, c, d = max(y0, r.y0), min(y1, ry1), max(x0, r.x0), min(x1, rx1)
        if a < b and c < d:
            target = labels[a - y0:b - y0, c - x0:d - x0]
            target[...] = 0 if whole else np.where(r.labels[a - r.y0:b - r.y0, c - r.x0:d - r.x0] > 0, 0, target)


def window_probs(predict: Callable[[int, Box], np.ndarray], boxes: Sequence[tuple[int, Box]], depth: int,
                 weight: float) -> Iterator[tuple[int, Box, np.ndarray]]:
    """``(z, box, prob)`` of each window, ``predict(z, box)``'s probabilities mixed with the same box in the slices
    above and below by ``weight`` (``ml.z_consensus``). Windows go box by box up the slices, each slice of a box
    predicted once while its neighbours need it (at most three held)."""
    if not weight:
        for z, box in boxes:
            yield z, box, predict(z, box)
        return
    by_box: dict[Box, list[int]] = {}
    for z, box in boxes:
        by_box.setdefault(box, []).append(int(z))
    for box, zs in by_box.items():
        held: dict[int, np.ndarray] = {}
        for z in sorted(zs):
            z0, z1 = neighbours(z, depth)
            held = {k: v for k, v in held.items() if k >= z0}
            for k in range(z0, z1):
                if k not in held:
                    held[k] = predict(k, box)
            yield z, box, slice_consensus(np.stack([held[k] for k in range(z0, z1)], axis=1), z, z0, weight, axis=1)


def pseudo_regions(model: nn.Module, volume: Any, lo: float, hi: float, boxes: Sequence[tuple[int, Box]],
                   config: SelfTrainConfig, held_out: Sequence[Region] = (), known: Sequence[Region] = (),
                   device: torch.device | str | None = None, cancel: CancelFn = None,
                   max_seconds: float | None = None) -> list[Region]:
    """One region per window of ``volume`` (raw, normalised with ``lo``/``hi``), pseudo-labeled by ``model``.

    Nothing is pseudo-labeled in the windows of ``held_out`` regions (the quality estimate must not
    score the model's agreement with itself) nor on the labeled pixels of ``known`` ones (a true
    label is never contradicted, e.g. imported dense labels). Windows stop once ``max_seconds`` are
    spent (a time budget), after the first."""
    views, start = [], time.monotonic()
    volume = with_neighbours(volume, model)
    ranked = config.bg_share < 1              # the background threshold needs every window's probabilities first

    def predict(z: int, box: Box) -> np.ndarray:
        return predict_view(model, volume, z, box, lo, hi, device=device)["prob"]
    for z, box, prob in window_probs(predict, boxes, int(volume.shape[0]), config.z_consensus):
        check_cancel(cancel)
        views.append((z, box, prob if ranked else pseudo_labels(prob, config.fg, config.bg)))
        if max_seconds is not None and time.monotonic() - start >= max_seconds:
            break
    bg = background_threshold([prob for _, _, prob in views], config) if ranked else config.bg
    out = []
    for z, box, view in views:
        labels = pseudo_labels(view, config.fg, bg) if ranked else view
        _blank(labels, z, box, held_out, whole=True)
        _blank(labels, z, box, known, whole=False)
        y0, y1, x0, x1 = box
        out.append(Region(normalize(volume[int(z), y0:y1, x0:x1], lo, hi), labels, int(z), y0, x0))
    return out


def self_train(model: nn.Module, regions: Sequence[Region], pseudo: Sequence[Region], val: Sequence[Region],
               train_config: TrainConfig, config: SelfTrainConfig, progress: ProgressFn = None,
               cancel: CancelFn = None, device: torch.device | str | None = None) -> TrainResult:
    """Train ``model`` on its true ``regions`` plus ``pseudo`` ones (``config.share`` of each batch true)."""
    pseudo = [r for r in pseudo if r.n_labeled > 0]
    everything = list(pseudo) + list(regions)
    sampler = FocusSampler(everything, regions, share=config.share, crop=train_config.crop, seed=train_config.seed,
                           augment=train_config.augment, zoom=train_config.zoom, balance=train_config.balance)
    return train(model, everything, list(val), train_config, progress=progress, cancel=cancel, device=device,
                 sampler=sampler)


def train_in_phases(model: nn.Module, regions: Sequence[Region], val: Sequence[Region], train_config: TrainConfig,
                    config: SelfTrainConfig, self_steps: int, pseudo: Callable[[nn.Module], list[Region]],
                    progress: ProgressFn = None, cancel: CancelFn = None,
                    device: torch.device | str | None = None) -> TrainResult:
    """``train_config.steps`` steps: the first ones on the labels alone, the last ``self_steps`` with
    ``pseudo(model)``'s regions (the model as it is then labels them), in ``config.rounds`` rounds that
    each label the pool again. After a supervised phase the self-training runs at half the learning rate
    with a new seed per round (the probe's schedule), and the result keeps a copy of the supervised phase's
    model (``TrainResult.supervised``): the quality estimate reads it (bench.quality v5)."""
    total = int(train_config.steps)
    first = total - int(self_steps)

    def shifted(offset: int, phase: str, span: int) -> ProgressFn:
        def on_step(done: int, _total: int, info: dict | None = None) -> None:
            info = dict(info or {}, phase=phase)
            if info.get("eta_s") is not None and span > done:      # this phase's ETA, stretched to the run's
                info["eta_s"] = round(info["eta_s"] * (total - offset - done) / (span - done), 1)
            report(progress, offset + done, total, **info)
        return on_step

    def timed(cfg: TrainConfig, steps: int) -> TrainConfig:
        limit = None if cfg.max_seconds is None else cfg.max_seconds * steps / max(1, total)
        return replace(cfg, steps=steps, max_seconds=limit)

    result = None
    if first > 0:
        result = train(model, regions, list(val), timed(train_config, first), progress=shifted(0, "training", first),
                       cancel=cancel, device=device)
    supervised = copy.deepcopy(model).eval() if first > 0 and self_steps > 0 else None
    done = first
    for k, n in enumerate(round_steps(int(self_steps), config.rounds)):
        report(progress, done, total, phase="pseudo-labeling")
        cfg = timed(train_config, n)
        if first > 0:
            cfg = replace(cfg, lr=cfg.lr * 0.5, warmup_steps=min(cfg.warmup_steps, n // 5), head_steps=0)
        cfg = replace(cfg, seed=cfg.seed + (1 if first > 0 else 0) + k)
        try:
            extra = pseudo(model)
            part = self_train(model, regions, extra, val, cfg, config, progress=shifted(done, "self-training", n),
                              cancel=cancel, device=device)
        except Cancelled as exc:                     # keep what the phases before learned
            partial = getattr(exc, "result", None)
            if result is not None:
                exc.result = result if partial is None else _joined(result, partial, done)  # type: ignore[attr-defined]
            raise
        result = part if result is None else _joined(result, part, done)
        done += n
    return result if supervised is None else replace(result, supervised=supervised)


def round_steps(steps: int, rounds: int) -> list[int]:
    """``steps`` split into at most ``rounds`` near-equal rounds, none empty (the first ones get the remainder)."""
    rounds = max(1, min(int(rounds), int(steps)))
    if steps <= 0:
        return []
    return [steps // rounds + (1 if k < steps % rounds else 0) for k in range(rounds)]


def _joined(a: TrainResult, b: TrainResult, offset: int) -> TrainResult:
    """One result for two phases: ``b``'s model and best score, both histories with ``b``'s steps shifted."""
    history = list(a.history) + [dict(h, step=h["step"] + offset) for h in b.history]
    best = b.best_step + offset if b.best_step is not None else None
    return TrainResult(b.model, history, b.best_val_iou, best)
