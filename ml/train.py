"""Fine-tune a U-Net on sparse labels, with validation, best-weight keeping and cancel.

The loss only sees labeled pixels (label 0 is ignored; label c+1 is class c) and is
normalised by their count, so a few strokes train as well as dense masks. Imbalance
(little mitochondria, much background) is handled by class-balanced crop centres
(ml.dataset.CropSampler); inverse-frequency class weights are available ("auto") but off
by default: on top of balanced sampling they over-corrected in a reference run on VNC
(held-out IoU 0.26 with "auto", 0.45 without; precision fell to 0.26). The learning
rate decays by a cosine within each run: a reference run with a constant rate swung
wildly between evaluations. Warm start is simply passing a model loaded from a checkpoint.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ml.anchor import Anchor
from ml.dataset import CropSampler, Region, split_regions
from ml.device import autocast, mixed_dtype, pick_device, precision, seeded
from ml.infer import predict_image
from ml.predicted_class import predicted_class
from ml.settings import FLAG, Range, check_settings, number, one_of, whole
from ml.progress import CancelFn, Cancelled, ProgressFn, check_cancel, report


#: Which parameters a run updates: everything, the decoder side (the encoder and bottleneck keep
#: what they learned, and their backward pass is skipped), or the 1x1 head only.
TRAIN_LAYERS = ("all", "decoder", "head")


def _weights_ok(v) -> bool:
    positive = number(0, low_open=True)[0]
    return v is None or v == "auto" or (isinstance(v, (list, tuple)) and len(v) > 0 and all(map(positive, v)))


#: the allowed values of every TrainConfig field (``ml.model.check_settings``; APP_TRAIN is checked against them)
TRAIN_RANGES: dict[str, Range] = {
    "steps": whole(1), "lr": number(0, low_open=True), "batch_size": whole(1), "crop": whole(16),
    "val_fraction": number(0, 1, high_open=True), "seed": whole(0), "augment": FLAG,
    "class_weights": (_weights_ok, "'auto', null or a list of positive numbers (one per class)"),
    "amp": FLAG, "cpu_bf16": FLAG, "cosine": FLAG, "eval_every": whole(1), "weight_decay": number(0),
    "dice_weight": number(0),
    "max_class_weight": number(1), "warmup_steps": whole(0), "min_lr_ratio": number(0, 1), "channels_last": FLAG,
    "ema": number(0, 1, high_open=True), "train_layers": one_of(TRAIN_LAYERS), "freeze_norm": FLAG,
    "head_steps": whole(0), "anchor": number(0), "zoom": number(0, 1),
    "balance": number(0, 1),
    "max_seconds": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0),
                    "null or a positive number of seconds"),
}


@dataclass
class TrainConfig:
    """Training settings; JSON-able through ``asdict`` (stored in checkpoint history/meta)."""

    steps: int = 200
    lr: float = 3e-3                  # bench.quality v3 (VNC, 250 steps): IoU 0.48 against 0.35 at 1e-3
    batch_size: int = 8
    crop: int = 128
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    class_weights: str | list[float] | None = None
    amp: bool = True                  # mixed precision: on CUDA, and on a CPU with cpu_bf16
    cpu_bf16: bool = True             # bf16 autocast on a CPU with native bf16 (ml.device.native_cpu_bf16), else a
    #                                   no-op: 1.95x per one-thread step with AMX, the same IoU at 100 patches (v35)
    cosine: bool = True
    eval_every: int = 25
    weight_decay: float = 1e-4
    dice_weight: float = 0.0
    max_class_weight: float = 10.0
    warmup_steps: int = 10
    min_lr_ratio: float = 0.05
    channels_last: bool = True
    ema: float = 0.99
    train_layers: str = "all"        # "all" | "decoder" (encoder + bottleneck frozen) | "head"
    freeze_norm: bool = False        # keep BatchNorm running statistics (tiny warm-start batches would drift them)
    head_steps: int = 0              # first train the 1x1 head alone for this many steps (linear probe, then all)
    anchor: float = 0.0              # pull toward the starting weights (L2-SP, decoupled): lr * anchor per step
    zoom: float = 0.0                # crops zoomed by up to 1 + zoom either way (augmentation; ml.dataset.CropSampler)
    balance: float = 1.0             # crop centres: 1 each class equally often, 0 as often as its labeled pixels
    max_seconds: float | None = None  # stop early once this much time is spent (a time budget's hard limit)

    def __post_init__(self) -> None:
        check_settings(vars(self), TRAIN_RANGES, "training setting")


@dataclass
class TrainResult:
    """Trained model (best validation weights loaded), per-step history and best score; ``supervised`` is a
    copy of the model the labels alone made when self-training went on from it (``train_in_phases``)."""

    model: nn.Module
    history: list[dict]
    best_val_iou: float | None
    best_step: int | None
    supervised: nn.Module | None = None

    @property
    def labels_only(self) -> nn.Module:
        """The model that never learned a pseudo-label: ``supervised``, or ``model`` when there was no self-training.
        Its probabilities on unlabeled pixels were never taught to themselves, so estimates read from it stay honest."""
        return self.supervised if self.supervised is not None else self.model


def class_weights(counts: dict[int, int], n_classes: int, max_weight: float = 10.0) -> torch.Tensor:
    """Inverse-frequency weights per class (label c+1 -> class c), clipped, mean weight per pixel 1."""
    n = np.array([counts.get(c + 1, 0) for c in range(n_classes)], dtype=np.float64)
    present = n > 0
    w = np.ones(n_classes)
    w[present] = n[present].sum() / (present.sum() * n[present])
    w = np.clip(w, 1.0 / max_weight, max_weight)
    if present.any():
        w /= (w[present] * n[present]).sum() / n[present].sum()
    return torch.tensor(w, dtype=torch.float32)


def crop_label_counts(regions: Sequence[Region], config: TrainConfig, n_crops: int = 64) -> dict[int, int]:
    """Label frequencies as the loss will see them: in class-balanced crops, not in the raw labels.

    Weighting by raw-label frequency on top of balanced sampling compensates twice and
    makes the model over-predict the rare class.
    """
    probe = CropSampler(regions, crop=config.crop, augment=False, seed=config.seed + 1)
    _, labels = probe.sample(n_crops)
    values, counts = np.unique(labels[labels > 0], return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def labeled_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None,
                 dice_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy over labeled pixels / labeled count (+ optional soft dice on foreground)."""
    target = labels.long() - 1  # unlabeled -> -1, ignored
    mask = target >= 0
    count = mask.sum().clamp_min(1)
    ce = F.cross_entropy(logits.float(), target.clamp_min(0), weight=weight, reduction="none")
    loss = (ce * mask).sum() / count
    if dice_weight > 0:
        prob = torch.softmax(logits.float(), 1)[:, 1:]
        onehot = F.one_hot(target.clamp_min(0), logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
        m = mask[:, None].float()
        inter = (prob * onehot * m).sum((0, 2, 3))
        denom = ((prob + onehot) * m).sum((0, 2, 3))
        loss = loss + dice_weight * (1.0 - ((2 * inter + 1.0) / (denom + 1.0)).mean())
    return loss


def evaluate(model: nn.Module, regions: Sequence[Region], device: torch.device,
             tile: int = 256) -> dict[str, float | None]:
    """Foreground IoU (mean over classes 1..C-1, labeled pixels only) and loss on ``regions``."""
    n_classes = int(model.config["n_classes"])
    inter = np.zeros(n_classes)
    union = np.zeros(n_classes)
    loss_sum, count = 0.0, 0
    for r in regions:
        prob = predict_image(model, r.image, tile=tile, device=device)["prob"]
        mask = r.labels > 0
        truth = r.labels[mask].astype(np.int64) - 1
        p = prob[:, mask]
        pred = predicted_class(p)
        for c in range(1, n_classes):
            inter[c] += np.sum((pred == c) & (truth == c))
            union[c] += np.sum((pred == c) | (truth == c))
        loss_sum += float(-np.log(np.clip(p[truth, np.arange(truth.size)], 1e-7, 1.0)).sum())
        count += truth.size
    valid = union[1:] > 0
    iou = float((inter[1:][valid] / union[1:][valid]).mean()) if valid.any() else None
    return {"val_iou": iou, "val_loss": loss_sum / max(count, 1)}


def clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model.state_dict()`` (best weights, EMA shadow, restore points)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class WeightAverage:
    """Exponential moving average of the weights (``TrainConfig.ema``).

    The last step's weights depend on the last few batches; their running average is a
    steadier model, which matters when a round is only a few dozen steps. The decay ramps
    up from 0.1 (``(1 + n) / (10 + n)``) so a short run is not dominated by its start.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = float(decay), 0
        self.shadow = clone_state(model)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.shadow[k].copy_(v)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """The averaged weights inside the block, the training weights restored after it."""
        backup = clone_state(model)
        model.load_state_dict(self.shadow)
        try:
            yield
        finally:
            model.load_state_dict(backup)


def warmup_cosine(step: int, steps: int, warmup_steps: int, min_ratio: float, cosine: bool = True) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to ``min_ratio`` (training and pre-training)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if not cosine:
        return 1.0
    t = (step - warmup_steps) / max(1, steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def _lr_lambda(config: TrainConfig):
    return lambda step: warmup_cosine(step, config.steps, config.warmup_steps, config.min_lr_ratio, config.cosine)


def _grad_scaler(device: torch.device, config: TrainConfig):
    """fp16 autocast needs loss scaling; bf16 and fp32 do not (``mixed_dtype`` says which the steps run in)."""
    fp16 = mixed_dtype(device, config.amp, config.cpu_bf16) == torch.float16
    return torch.amp.GradScaler("cuda", enabled=fp16)


def _better(score: dict, best: tuple | None) -> tuple | None:
    """Rank by val IoU, ties (or no foreground) broken by lower val loss."""
    key = (score["val_iou"] if score["val_iou"] is not None else -1.0, -score["val_loss"])
    return key if best is None or key > best else None


def trainable_parameters(model: nn.Module, layers: str) -> list[nn.Parameter]:
    """The parameters ``layers`` updates (see TRAIN_LAYERS); the rest get ``requires_grad=False``."""
    out = []
    for name, p in model.named_parameters():
        if layers == "head":
            train_it = name.startswith("head.")
        else:
            train_it = layers == "all" or not name.startswith(("encoders.", "bottleneck."))
        p.requires_grad_(train_it)
        if train_it:
            out.append(p)
    return out


def set_train_mode(model: nn.Module, freeze_norm: bool) -> None:
    """Dropout on; BatchNorm on its batch statistics unless ``freeze_norm`` keeps the running ones."""
    model.train()
    if freeze_norm:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def train(model: nn.Module, train_regions: Sequence[Region], val_regions: Sequence[Region] | None,
          config: TrainConfig | None = None, progress: ProgressFn = None, cancel: CancelFn = None,
          device: torch.device | str | None = None, sampler: CropSampler | None = None) -> TrainResult:
    """Train ``model`` in place; returns it with the best-validation weights loaded (eval mode).

    ``val_regions=None`` splits ``train_regions`` with ``config.val_fraction``; an empty list
    means no validation (final weights kept). ``progress(step, steps, {loss, val_iou, lr,
    eta_s})`` is called every step. On cancel the best weights so far are restored and
    :class:`Cancelled` is raised with the partial :class:`TrainResult` as ``exc.result``.
    ``sampler`` replaces the default crop sampler over ``train_regions`` (live mode focuses
    half of each batch on the newest stroke). Parameters that ``config.train_layers`` freezes
    are left with ``requires_grad=False``.
    """
    config = config or TrainConfig()
    device = device if isinstance(device, torch.device) else pick_device(device)
    if val_regions is None:
        train_regions, val_regions = split_regions(train_regions, config.val_fraction, config.seed)
    sampler = sampler or CropSampler(train_regions, crop=config.crop, augment=config.augment, seed=config.seed,
                                     zoom=config.zoom, balance=config.balance)
    n_classes = int(model.config["n_classes"])
    if max(sampler.classes) > n_classes:
        raise ValueError(f"labels use value {max(sampler.classes)} but the model has {n_classes} classes")
    weight = None
    if config.class_weights == "auto":
        weight = class_weights(crop_label_counts(train_regions, config), n_classes, config.max_class_weight).to(device)
    elif config.class_weights is not None:
        if len(config.class_weights) != n_classes:
            raise ValueError(f"class_weights has {len(config.class_weights)} values for {n_classes} classes")
        weight = torch.tensor(config.class_weights, dtype=torch.float32, device=device)
    # Channels-last pays on the CPU too since BatchNorm (bench/train_speed.py: 1.23-1.62x per step);
    # with GroupNorm it did not, which is why it used to be CUDA-only.
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    if config.head_steps > 0 and config.train_layers != "head":
        _head_phase(model, train_regions, config, sampler, cancel, device)
    model.to(device).to(memory_format=fmt)
    opt = torch.optim.AdamW(trainable_parameters(model, config.train_layers), lr=config.lr,
                            weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config))
    pull = Anchor(model, config.anchor) if config.anchor > 0 else None
    scaler = _grad_scaler(device, config)
    history: list[dict] = []
    state = {"best": None, "best_state": None, "best_step": None, "best_iou": None, "val_iou": None}
    ema = WeightAverage(model, config.ema) if config.ema > 0 else None
    start = time.monotonic()
    with seeded(config.seed, device):
        try:
            for step in range(1, config.steps + 1):
                check_cancel(cancel)
                entry = _train_step(model, sampler, opt, sched, scaler, weight, config, device, fmt, step)
                if pull is not None:
                    pull.apply(entry["lr"])
                if ema is not None:
                    ema.update(model)
                if val_regions and (step % config.eval_every == 0 or step == config.steps):
                    with ema.applied(model) if ema is not None else contextlib.nullcontext():
                        entry.update(_validate(model, val_regions, device, config, state, step))
                history.append(entry)
                spent = time.monotonic() - start
                eta = spent / step * (config.steps - step)
                if config.max_seconds is not None:
                    eta = min(eta, max(0.0, config.max_seconds - spent))
                report(progress, step, config.steps, loss=entry["loss"], val_iou=state["val_iou"],
                       lr=entry["lr"], eta_s=round(eta, 1))
                if config.max_seconds is not None and spent >= config.max_seconds and step < config.steps:
                    break   # out of time: the EMA / best weights so far are the model
        except Cancelled as exc:
            result = _finish(model, history, state, ema)
            exc.result = result  # type: ignore[attr-defined]
            raise
    return _finish(model, history, state, ema)


def _head_phase(model, train_regions, config, sampler, cancel, device) -> None:
    """Linear probe before fine-tuning (LP-FT): a new head's random start would otherwise send
    large gradients through a pre-trained body in the first steps. A measured option (BENCHMARKS
    v18, off by default): its steps are not reported as progress nor counted in ``max_seconds``."""
    head = replace(config, steps=config.head_steps, train_layers="head", head_steps=0, ema=0.0, max_seconds=None,
                   warmup_steps=0)
    train(model, train_regions, [], head, cancel=cancel, device=device, sampler=sampler)


def _train_step(model, sampler, opt, sched, scaler, weight, config, device, fmt, step) -> dict:
    set_train_mode(model, config.freeze_norm)
    imgs, labs = sampler.sample(config.batch_size)
    x = torch.from_numpy(imgs).to(device).contiguous(memory_format=fmt)
    y = torch.from_numpy(labs).to(device)
    with autocast(device, enabled=config.amp, cpu_bf16=config.cpu_bf16):
        logits = model(x)
    loss = labeled_loss(logits.float(), y, weight, config.dice_weight)   # the loss in fp32 under any autocast
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    lr = opt.param_groups[0]["lr"]
    sched.step()
    return {"step": step, "loss": round(float(loss.detach()), 6), "lr": lr}


def _validate(model, val_regions, device, config, state, step) -> dict:
    score = evaluate(model, val_regions, device, tile=max(2 * config.crop, 64))
    key = _better(score, state["best"])
    if key is not None:
        state.update(best=key, best_step=step, best_iou=score["val_iou"],
                     best_state=clone_state(model))
    state["val_iou"] = score["val_iou"]
    return score


def _finish(model: nn.Module, history: list[dict], state: dict, ema: WeightAverage | None = None) -> TrainResult:
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    elif ema is not None:
        model.load_state_dict(ema.shadow)
    model.to(memory_format=torch.contiguous_format).eval()   # handed back in the layout callers expect
    return TrainResult(model, history, state["best_iou"], state["best_step"])


def config_dict(config: TrainConfig, device: torch.device | None = None) -> dict:
    """JSON-able form of a config (for checkpoint meta); with ``device``, also the precision the run trained in
    (``cpu_bf16`` asks, and is a no-op on a CPU without native bf16)."""
    out = asdict(config)
    if device is not None:
        out["precision"] = precision(device, config.amp, config.cpu_bf16)
    return out
