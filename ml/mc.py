"""MC-dropout samples for a UNet2D at a fraction of T full passes: ``MCSampler``.

In UNet2D the encoder has no dropout, so its output (skips and pre-dropout bottleneck) is
the same in every MC sample. Two scopes:

- ``"head"`` (default): the whole network runs once; only the dropout on the last decoder
  block's output and the 1x1 head are sampled T times (last-layer MC dropout). T = 8 costs
  about 1.1x one pass, so BALD scoring and uncertainty maps cost what plain scoring does.
- ``"decoder"``: every decoder dropout is sampled, so the decoder (two thirds of the
  compute) runs T times: ~4.4x one pass for T = 8, measured in docs/BENCHMARKS.md.

On CPU, drawing masks with ``bernoulli_`` costs about a third of a pass, so masks come from
16-bit slices of 64-bit random words (same distribution to 1/65536). A model without this
structure gets plain ``model(x)`` passes under ``ml.model.mc_dropout``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ml.model import mc_dropout, pad_to_multiple

Drop = Callable[[torch.Tensor, float], torch.Tensor]
MC_SCOPES = ("head", "decoder")
_PARTS = ("encoders", "pool", "bottleneck", "ups", "decoders", "head")


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout (keep with prob 1-p, scale 1/(1-p)) using cheap 16-bit random draws."""
    if p <= 0.0:
        return x
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), 2**63 - 1)
    bits = words.view(torch.int16)[:n]
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
        b, c, h, w = x.shape
        bits = bits.view(b, h, w, c).permute(0, 3, 1, 2)
    else:
        bits = bits.view(x.shape)
    keep = bits >= int(round(p * 65536)) - 32768
    return x * keep * (1.0 / (1.0 - p))


def torch_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """torch's own dropout (what nn.Dropout does in train mode); used to check equivalence."""
    return torch.nn.functional.dropout(x, p, training=True)


def _layers(block: nn.Module) -> list[nn.Module]:
    return list(block) if isinstance(block, nn.Sequential) else [block]


def supports_split(model: nn.Module) -> bool:
    """True when ``model`` is U-Net shaped and its only dropouts are plain nn.Dropout layers that
    end the bottleneck or sit directly in a decoder block (so the encoder is deterministic)."""
    if not all(hasattr(model, name) for name in _PARTS + ("multiple",)):
        return False
    if not isinstance(model.bottleneck, nn.Sequential):
        return False
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    candidates = _layers(model.bottleneck)[-1:] + [l for d in model.decoders for l in _layers(d)]
    handled = [m for m in candidates if isinstance(m, nn.Dropout)]
    return all(type(m) is nn.Dropout for m in drops) and {id(m) for m in drops} == {id(m) for m in handled}


@dataclass
class Encoded:
    """The dropout-free part of a U-Net pass, reused by every decoder pass."""

    z: torch.Tensor  # bottleneck features before its trailing dropout
    skips: list[torch.Tensor]
    hw: tuple[int, int]


def encode(model: nn.Module, x: torch.Tensor) -> Encoded:
    """Padded encoder pass and bottleneck convolutions (everything before the first dropout)."""
    x, hw = pad_to_multiple(x, model.multiple)
    skips = []
    for enc in model.encoders:
        x = enc(x)
        skips.append(x)
        x = model.pool(x)
    body = _layers(model.bottleneck)
    if isinstance(body[-1], nn.Dropout):
        body = body[:-1]
    for layer in body:
        x = layer(x)
    return Encoded(x, skips, hw)


def _run(block: nn.Module, x: torch.Tensor, drop: Drop | None) -> torch.Tensor:
    for layer in _layers(block):
        if isinstance(layer, nn.Dropout):
            x = x if drop is None else drop(x, float(layer.p))
        else:
            x = layer(x)
    return x


def decode_features(model: nn.Module, encoded: Encoded, drop: Drop | None = None) -> torch.Tensor:
    """Full-resolution features before the head (padded size); ``drop=None`` is the eval pass."""
    x = encoded.z
    tail = _layers(model.bottleneck)[-1]
    if isinstance(tail, nn.Dropout) and drop is not None:
        x = drop(x, float(tail.p))
    for up, dec, skip in zip(model.ups, model.decoders, reversed(encoded.skips)):
        x = _run(dec, torch.cat([up(x), skip], dim=1), drop)
    return x


def decode(model: nn.Module, encoded: Encoded, drop: Drop | None = None) -> torch.Tensor:
    """Logits from encoder output; ``drop=None`` is the deterministic (eval) pass."""
    h, w = encoded.hw
    return model.head(decode_features(model, encoded, drop))[..., :h, :w]


def last_dropout(model: nn.Module) -> float:
    """p of the dropout that ends the last decoder block (0 when there is none)."""
    tail = _layers(model.decoders[-1])[-1]
    return float(tail.p) if isinstance(tail, nn.Dropout) else 0.0


class MCSampler:
    """One deterministic pass of a batch, then MC-dropout logits samples of it on demand.

    ``logits`` is the eval-mode output; ``sample()`` one stochastic draw (``scope`` above;
    "head" falls back to "decoder" for a model without a last-layer dropout);
    ``embedding`` the pooled bottleneck features of the same pass (None without the split).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, scope: str = "head"):
        if scope not in MC_SCOPES:
            raise ValueError(f"MC scope must be one of {MC_SCOPES}, got {scope!r}")
        self.model, self.x = model, x
        self.split = supports_split(model)
        self.embedding = None
        if not self.split:
            self.logits = model(x)
            return
        self.encoded = encode(model, x)
        self.embedding = self.encoded.z.float().mean(dim=(2, 3))
        self.features = decode_features(model, self.encoded)
        h, w = self.encoded.hw
        self.logits = model.head(self.features)[..., :h, :w]
        self.p_last = last_dropout(model)
        self.scope = "head" if scope == "head" and self.p_last > 0 else "decoder"

    def sample(self) -> torch.Tensor:
        if not self.split:
            with mc_dropout(self.model):
                return self.model(self.x)
        if self.scope == "decoder":
            return decode(self.model, self.encoded, fast_dropout)
        h, w = self.encoded.hw
        return self.model.head(fast_dropout(self.features, self.p_last))[..., :h, :w]
