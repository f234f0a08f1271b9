"""Self-supervised pre-training on the user's own unlabeled volume (masked inpainting + denoising).

Every model a project trains starts from weights that have already seen this tissue:
random crops of the volume are corrupted (random square blocks replaced by noise, the
rest given a random contrast/gamma change and Gaussian noise) and the U-Net body, with a
one-channel reconstruction head, learns to restore the clean crop. To fill a masked block
it must use the surrounding membranes and organelles (the skip connections cannot copy
what is not there), which is the context a segmentation needs; the intensity changes teach
it to look past contrast. This is Models Genesis' recipe (Zhou et al. 2019) cut down to 2D
EM. Measured against the alternatives with the app's training (docs/BENCHMARKS.md, v23, v24,
against two runs of this recipe): 60 % masked blocks give worse first models (-0.099 / -0.089
IoU), 32 px blocks likely so (-0.051 / -0.041), denoising alone (the skips can copy) -0.032 /
-0.023, within the noise of one pre-training run, and no pre-training -0.052 / -0.043.
8 px blocks: over three pre-training runs a side (v27) +0.021 on the dev seeds 0-5, out of the runs'
own spread (standard error 0.007) but not out of the draws' (0.014), and behind on fresh seeds 6-8
(-0.010), so +0.011 (0.013, 5 of 9 up) over nine seeds and +0.010 (0.010) at 100 patches: no
difference worth a default. 16 px stays (the rule is two standard errors over the draws), and every
quick-protocol number (v20-v22, all 16 px) still describes the app's recipe.

On a CPU with native bf16 (AMX, AVX-512 BF16) the steps run in bf16 autocast (``cpu_bf16``): 1.7x faster,
with first models inside the spread of fp32 pre-training runs (BENCHMARKS v36).

The result is a file of body weights (everything but the segmentation head) that
:func:`init_from_pretrained` loads into a new ``UNet2D`` of the same architecture.
Snapshots are written every ``save_every`` steps to ``<out>.partial``, so a cancelled or
crashed run resumes where it stopped; both files are written atomically.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ml.files import atomic_write, sidecar_path
from ml.device import autocast, pick_device, precision, seeded
from ml.io.normalize import normalize
from ml.model import FIRST_CONV, UNet2D
from ml.pretrained import (ARCH_KEYS, FORMAT, VERSION, PretrainConfig, PretrainError, check_arch, fits, partial_path,
                           read_info, read_payload)
from ml.progress import CancelFn, Cancelled, ProgressFn, check_cancel, report
from ml.slice_context import widen_first_conv
from ml.train import warmup_cosine

MIN_LR_RATIO = 0.05   # the cosine ends at this share of the learning rate, as training's does

__all__ = ["ARCH_KEYS", "FORMAT", "VERSION", "PretrainConfig", "PretrainError", "PretrainResult", "Source",
           "corrupt", "fits", "init_from_pretrained", "mixed_args", "partial_path", "pretrain", "read_info"]

@dataclass
class Source:
    """Unlabeled image data to pre-train on: a (Z, Y, X) array-like, its intensity window, a y-range.

    ``y_range`` limits crops to rows ``[y0, y1)`` (the benchmark keeps its test half out).
    """

    volume: Any
    lo: float
    hi: float
    y_range: tuple[int, int] | None = None

    def rows(self) -> tuple[int, int]:
        h = int(self.volume.shape[1])
        y0, y1 = self.y_range or (0, h)
        return max(0, int(y0)), min(h, int(y1))


@dataclass
class PretrainResult:
    """Where the weights went, how many steps they saw, and the loss curve."""

    path: Path
    steps: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def final_loss(self, last: int = 50) -> float:
        """Mean loss of the last ``last`` steps (NaN without any): one batch's loss swings by a fifth
        from step to step (0.028-0.035 at the end of one run, BENCHMARKS v27), so it is no measure of a body."""
        losses = [h["loss"] for h in self.history[-last:]]
        return float(np.mean(losses)) if losses else float("nan")


class CropReader:
    """Random normalised crops from the sources, read lazily (one crop at a time, never a volume)."""

    def __init__(self, sources: Sequence[Source], crop: int, rng: np.random.Generator):
        self.sources = [s for s in sources if min(s.rows()[1] - s.rows()[0], int(s.volume.shape[2])) >= crop]
        if not self.sources:
            raise ValueError(f"no source is at least {crop} x {crop} px; use a smaller crop")
        self.crop, self.rng = int(crop), rng
        sizes = np.array([s.volume.shape[0] * (s.rows()[1] - s.rows()[0]) * s.volume.shape[2]
                          for s in self.sources], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def crop_at_random(self) -> np.ndarray:
        s = self.sources[int(self.rng.choice(len(self.sources), p=self.weights))]
        y0, y1 = s.rows()
        c = self.crop
        z = int(self.rng.integers(s.volume.shape[0]))
        y = int(self.rng.integers(y0, y1 - c + 1))
        x = int(self.rng.integers(0, int(s.volume.shape[2]) - c + 1))
        img = normalize(s.volume[z, y:y + c, x:x + c], s.lo, s.hi)
        img = np.rot90(img, int(self.rng.integers(4)))
        return np.ascontiguousarray(img[:, ::-1] if self.rng.random() < 0.5 else img)


def corrupt(clean: np.ndarray, config: PretrainConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(corrupted image, mask of replaced pixels)`` for one clean crop in [0, 1]."""
    img = np.clip(clean, 0.0, 1.0) ** np.exp(rng.uniform(-0.4, 0.4))
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.7, 1.3) + mean + rng.uniform(-0.1, 0.1)
    img = img + rng.normal(0.0, rng.uniform(0.0, config.noise), img.shape)
    b = config.block
    nb = math.ceil(clean.shape[0] / b), math.ceil(clean.shape[1] / b)
    blocks = rng.random(nb) < config.mask_ratio
    mask = np.kron(blocks, np.ones((b, b), bool))[:clean.shape[0], :clean.shape[1]]
    img = np.where(mask, rng.random(img.shape), img)
    return img.astype(np.float32), mask


class Reconstructor(nn.Module):
    """The U-Net body with a one-channel reconstruction head (sigmoid, [0, 1])."""

    def __init__(self, body: UNet2D):
        super().__init__()
        self.body = body
        self.recon = nn.Conv2d(int(body.config["base"]), 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.recon(self.body.features(x)).float())   # fp32 under a bf16 autocast too


def mixed_args(config: PretrainConfig, device: torch.device) -> dict:
    """``autocast``'s and ``precision``'s arguments for pre-training: bf16 on a CPU with native bf16 when
    ``cpu_bf16`` asks (BENCHMARKS v36), else fp32. CUDA stays fp32 here: fp16 would need loss scaling,
    and no GPU has measured a body trained in mixed precision."""
    return {"device": device, "enabled": device.type == "cpu", "cpu_bf16": config.cpu_bf16}


def _batch(reader: CropReader, config: PretrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    clean = np.stack([reader.crop_at_random() for _ in range(config.batch_size)])
    pairs = [corrupt(c, config, reader.rng) for c in clean]
    x = np.stack([p[0] for p in pairs])[:, None]
    m = np.stack([p[1] for p in pairs])[:, None]
    return torch.from_numpy(x), torch.from_numpy(clean[:, None].astype(np.float32)), torch.from_numpy(m)


def reconstruction_loss(pred: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor, masked_weight: float) -> torch.Tensor:
    """Weighted MSE: ``masked_weight`` on the replaced blocks, the rest on the visible pixels."""
    err = (pred.float() - clean) ** 2
    m = mask.float()
    masked = (err * m).sum() / m.sum().clamp_min(1.0)
    visible = (err * (1 - m)).sum() / (1 - m).sum().clamp_min(1.0)
    return masked_weight * masked + (1.0 - masked_weight) * visible


def _save(path: Path, net: Reconstructor, opt: torch.optim.Optimizer | None, step: int, config: PretrainConfig,
          history: list[dict], meta: dict, complete: bool) -> None:
    body = {k: v.detach().cpu().clone() for k, v in net.body.state_dict().items() if not k.startswith("head.")}
    info = {"format": FORMAT, "version": VERSION, "config": net.body.config, "pretrain": asdict(config),
            "precision": precision(**mixed_args(config, next(net.parameters()).device)), "steps_done": int(step),
            "complete": bool(complete), "history": history[-200:], "meta": meta}
    payload = dict(info, state_dict=body)
    if not complete:
        payload["recon"] = {k: v.detach().cpu().clone() for k, v in net.recon.state_dict().items()}
        payload["optimizer"] = opt.state_dict() if opt is not None else None
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    if complete:
        text = json.dumps(info, indent=2)
        atomic_write(sidecar_path(path), lambda tmp: Path(tmp).write_text(text))


#: settings a resumed run may change: how often it saves, how long it may take and the precision of its
#: arithmetic (the recipe, what it learns, stays; snapshots from before ``cpu_bf16`` existed resume too)
RESUME_FREE = frozenset({"save_every", "max_seconds", "cpu_bf16"})


def same_recipe(saved: dict, config: PretrainConfig) -> bool:
    """Whether a snapshot's settings are ``config``'s: resuming a run of another recipe (another block
    size, say, after an upgrade or an ``APP_PRETRAIN`` change) would mix two pre-trainings in one body."""
    wanted = {k: v for k, v in asdict(config).items() if k not in RESUME_FREE}
    return {k: saved.get(k) for k in wanted} == wanted


def _resume(path: Path, net: Reconstructor, opt: torch.optim.Optimizer,
            config: PretrainConfig) -> tuple[int, list[dict]]:
    """Load a matching ``.partial`` snapshot; returns (step, history), (0, []) when there is none."""
    if not path.is_file():
        return 0, []
    try:
        payload = read_payload(path)
        check_arch(payload["config"], net.body.config, path)
        if not same_recipe(payload.get("pretrain") or {}, config):
            return 0, []   # another recipe's snapshot: start afresh (it is overwritten at the next save)
        net.body.load_state_dict(payload["state_dict"], strict=False)
        net.recon.load_state_dict(payload["recon"])
        if payload.get("optimizer"):
            opt.load_state_dict(payload["optimizer"])
    except (PretrainError, KeyError, RuntimeError, ValueError):
        return 0, []   # a snapshot of another architecture or a broken one: start afresh
    return int(payload.get("steps_done", 0)), list(payload.get("history", []))


def pretrain(model: UNet2D, sources: Sequence[Source], out: str | Path, config: PretrainConfig | None = None,
             progress: ProgressFn = None, cancel: CancelFn = None, device: torch.device | str | None = None,
             resume: bool = True, meta: dict | None = None) -> PretrainResult:
    """Pre-train ``model``'s body in place on unlabeled ``sources``; write the weights to ``out``.

    ``progress(step, steps, {loss, eta_s})`` every step. On cancel a snapshot is saved to
    ``<out>.partial`` (resumed by the next call with ``resume=True``) and :class:`Cancelled`
    is raised. ``config.max_seconds`` ends the run early as complete (the step count is
    recorded), so a time budget holds on a slow machine.
    """
    config = config or PretrainConfig()
    device = device if isinstance(device, torch.device) else pick_device(device)
    out = Path(out)
    snapshot = partial_path(out)
    meta = dict(meta or {})
    with seeded(config.seed, device):
        net = Reconstructor(model).to(device, memory_format=torch.channels_last)  # as ml.train: faster
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_step, history = _resume(snapshot, net, opt, config) if resume else (0, [])
    reader = CropReader(sources, config.crop, np.random.default_rng([config.seed, start_step]))
    started = time.monotonic()
    step = start_step
    net.train()
    with seeded(config.seed + start_step, device):
        try:
            while step < config.steps:
                check_cancel(cancel)
                for g in opt.param_groups:
                    g["lr"] = config.lr * warmup_cosine(step, config.steps, config.warmup_steps, MIN_LR_RATIO)
                x, clean, mask = (t.to(device) for t in _batch(reader, config))
                x = x.contiguous(memory_format=torch.channels_last)
                with autocast(**mixed_args(config, device)):
                    pred = net(x)
                loss = reconstruction_loss(pred, clean, mask, config.masked_weight)   # in fp32 (pred.float())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                history.append({"step": step, "loss": round(float(loss.detach()), 6)})
                elapsed = time.monotonic() - started
                eta = elapsed / (step - start_step) * (config.steps - step)
                report(progress, step, config.steps, loss=history[-1]["loss"], eta_s=round(eta, 1), stage="pretrain")
                if config.max_seconds is not None and elapsed >= config.max_seconds:
                    break
                if step % config.save_every == 0 and step < config.steps:
                    _save(snapshot, net, opt, step, config, history, meta, complete=False)
        except Cancelled:
            _save(snapshot, net, opt, step, config, history, meta, complete=False)
            raise
    _save(out, net, None, step, config, history, meta, complete=True)
    snapshot.unlink(missing_ok=True)
    model.to(memory_format=torch.contiguous_format).eval()
    return PretrainResult(out, step, history, time.monotonic() - started)


def _widened(state: dict, model: UNet2D) -> dict:
    """``state`` with its first convolution widened to the model's input channels (a one-slice body
    starting a model that reads neighbour slices too)."""
    first = FIRST_CONV + ".weight"
    channels = int(model.config["in_channels"])
    if first not in state or state[first].shape[1] == channels:
        return state
    return {**state, first: widen_first_conv(state[first], channels)}


def init_from_pretrained(model: UNet2D, path: str | Path) -> dict:
    """Load pre-trained body weights into ``model`` (the segmentation head stays fresh).

    Raises :class:`PretrainError` when the file is unfinished or the architecture differs.
    Returns the file's info (steps, settings, meta) for provenance.
    """
    path = Path(path)
    payload = read_payload(path)
    if not payload.get("complete"):
        raise PretrainError(f"{path} is an unfinished pre-training snapshot")
    check_arch(payload["config"], model.config, path)
    missing, unexpected = model.load_state_dict(_widened(payload["state_dict"], model), strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise PretrainError(f"{path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return {k: v for k, v in payload.items() if k not in ("state_dict", "recon", "optimizer")}
