"""Score candidate patches with the current model: uncertainty, foreground share, embedding.

One deterministic pass per batch gives entropy, least confidence, margin, foreground
fraction and the bottleneck embedding (captured from the same forward); ``mc_passes``
extra passes with MC dropout give BALD. Pixel scores are aggregated per patch as the
mean (or, with ``top_fraction``, the mean of the most uncertain fraction of pixels, which
favours patches with a small confusing structure over uniformly mild ones).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ml.device import autocast, inference_layout, pick_device, seeded
from ml.io.normalize import normalize
from ml.mc import MCSampler
from ml.progress import CancelFn, ProgressFn, check_cancel, report

from .pool import Patch
from .scores import PatchScores

Reader = Callable[[Patch], np.ndarray]

__all__ = ["PatchScores", "score_patches", "volume_reader", "forward_with_embedding", "pixel_scores", "score_batch"]


def volume_reader(volume: Any, lo: float | None = None, hi: float | None = None) -> Reader:
    """Reader for ``score_patches``: crops a patch from a (Z, Y, X) volume, scaled to [0, 1].

    ``lo``/``hi`` default to the volume's 1 / 99.5 percentiles (the app's display window,
    also used for training), so scoring sees the same intensities as training.
    """
    if lo is None or hi is None:
        if not hasattr(volume, "percentiles"):
            raise TypeError("volume_reader needs lo and hi for an array without .percentiles(); pass both")
        lo, hi = volume.percentiles()
    lo, hi = float(lo), float(hi)

    def read(p: Patch) -> np.ndarray:
        return normalize(volume[p.z, p.y:p.y + p.size, p.x:p.x + p.size], lo, hi)

    return read


def forward_with_embedding(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the pooled bottleneck embedding from a single forward pass.

    Hooks ``model.bottleneck`` (UNet2D); a model without one falls back to ``model.embed``.
    """
    bottleneck = getattr(model, "bottleneck", None)
    if not isinstance(bottleneck, nn.Module):
        return model(x), model.embed(x)
    captured: list[torch.Tensor] = []
    handle = bottleneck.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, captured[-1].float().mean(dim=(2, 3))


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Per-pixel entropy over the class axis, normalised by log(C) to [0, 1]."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(1) / math.log(p.shape[1])


def _aggregate(pixels: torch.Tensor, top_fraction: float | None, largest: bool = True) -> torch.Tensor:
    """[N, H, W] -> [N]: mean, or mean of the top (bottom if not ``largest``) fraction of pixels."""
    flat = pixels.flatten(1)
    if top_fraction is None:
        return flat.mean(1)
    n = max(1, int(round(flat.shape[1] * top_fraction)))
    return flat.topk(n, dim=1, largest=largest).values.mean(1)


def pixel_scores(prob: torch.Tensor, top_fraction: float | None = None) -> dict[str, torch.Tensor]:
    """Per-patch entropy, least confidence, margin and foreground fraction from probabilities [N, C, H, W]."""
    top2 = prob.topk(2, dim=1).values
    return {
        "entropy": _aggregate(_entropy(prob), top_fraction),
        "least_confidence": _aggregate(1.0 - top2[:, 0], top_fraction),
        "margin": _aggregate(top2[:, 0] - top2[:, 1], top_fraction, largest=False),
        "fg_fraction": (prob.argmax(1) != 0).float().flatten(1).mean(1),
    }


def _bald(sample: Callable[[], torch.Tensor], passes: int, device: torch.device,
          top_fraction: float | None) -> torch.Tensor:
    """Per-patch mutual information H(E[p]) - E[H(p)] over ``passes`` stochastic logits samples."""
    mean_p = None
    mean_h = None
    for _ in range(passes):
        with autocast(device):
            p = torch.softmax(sample().float(), dim=1)
        h = _entropy(p)
        mean_p = p if mean_p is None else mean_p + p
        mean_h = h if mean_h is None else mean_h + h
    mi = _entropy(mean_p / passes) - mean_h / passes
    return _aggregate(mi.clamp_min(0.0), top_fraction)


def score_batch(model: nn.Module, x: torch.Tensor, mc_passes: int, device: torch.device,
                top_fraction: float | None = None, mc_scope: str = "head") -> dict[str, torch.Tensor]:
    """Scores for one batch [N, 1, H, W] (model in eval mode, inside inference_mode).

    One pass gives the deterministic scores and the embedding; MC samples for BALD come from
    ``ml.mc.MCSampler`` (``mc_scope``: "head" re-samples only the last layer, "decoder" the
    whole decoder), so the encoder never runs twice.
    """
    with autocast(device):
        sampler = MCSampler(model, x, mc_scope)
        emb = sampler.embedding
        if emb is None:
            _, emb = forward_with_embedding(model, x)
    out = pixel_scores(torch.softmax(sampler.logits.float(), 1), top_fraction)
    out["embeddings"] = emb.float()
    if mc_passes > 0:
        out["bald"] = _bald(sampler.sample, mc_passes, device, top_fraction)
    return out


def _read_batch(reader: Reader, batch: Sequence[Patch]) -> np.ndarray:
    images = [np.asarray(reader(p), dtype=np.float32) for p in batch]
    for p, img in zip(batch, images):
        if img.shape != (p.size, p.size):
            raise ValueError(f"reader returned shape {img.shape} for {p}; expected ({p.size}, {p.size})")
    return np.stack(images)[:, None]


def _as_reader(reader: Any) -> Reader:
    if hasattr(reader, "shape") and hasattr(reader, "percentiles"):
        return volume_reader(reader)
    if callable(reader):
        return reader
    raise TypeError(
        f"reader must be a callable(Patch) -> float32 (size, size) image in [0, 1] "
        f"(see volume_reader) or a Volume; got {type(reader).__name__}"
    )


def score_patches(
    model: nn.Module,
    reader: Reader | Any,
    patches: Sequence[Patch],
    mc_passes: int = 8,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    top_fraction: float | None = None,
    seed: int | None = 0,
    mc_scope: str = "head",
) -> PatchScores:
    """Score every patch; ``reader`` maps a Patch to its normalised image (or pass a Volume).

    MC-dropout masks are drawn from ``seed`` (same model, same patches: same scores).
    The model's train/eval flags are restored afterwards; it is moved to ``device``.
    ``progress(done, total, info)`` is called after each batch; ``cancel`` is checked too.
    """
    if int(mc_passes) < 0 or int(batch_size) < 1:
        raise ValueError(f"need mc_passes >= 0 and batch_size >= 1, got {mc_passes}, {batch_size}")
    if top_fraction is not None and not 0.0 < float(top_fraction) <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1] or None, got {top_fraction}")
    read = _as_reader(reader)
    device = device if isinstance(device, torch.device) else pick_device(device)
    patches = list(patches)
    if len({p.size for p in patches}) > 1:
        raise ValueError(f"all patches must share one size, got sizes {sorted({p.size for p in patches})}")
    cols: dict[str, list[np.ndarray]] = {}
    with inference_layout(model, device), torch.inference_mode(), seeded(seed, device):
        for start in range(0, len(patches), int(batch_size)):
            check_cancel(cancel)
            batch = patches[start:start + int(batch_size)]
            x = torch.from_numpy(_read_batch(read, batch)).to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            for key, val in score_batch(model, x, int(mc_passes), device, top_fraction, mc_scope).items():
                cols.setdefault(key, []).append(val.cpu().numpy())
            report(progress, start + len(batch), len(patches), stage="scoring")
    dim = int(getattr(model, "embed_dim", 0))
    out = {k: np.concatenate(v) for k, v in cols.items()}
    if not patches:
        out = {k: np.zeros(0) for k in ("entropy", "least_confidence", "margin", "fg_fraction", "bald")}
        out["embeddings"] = np.zeros((0, dim))
    return PatchScores(
        entropy=out["entropy"], least_confidence=out["least_confidence"], margin=out["margin"],
        fg_fraction=out["fg_fraction"], embeddings=out["embeddings"],
        bald=out["bald"] if mc_passes > 0 else None, patches=patches,
    )
