"""A small 2D U-Net for EM segmentation whose output for a pixel does not depend on the tile.

BatchNorm (the default, ``norm="batch"``): in eval mode it applies fixed running
statistics, so a pixel's probability is the same whatever tile, batch or viewport it is
predicted in, and MC dropout is valid (``mc_dropout`` keeps BatchNorm in eval mode and
samples only the dropout layers). GroupNorm (``"group"``, the architecture of checkpoints
written before v2) normalises by per-tile statistics: the same model scored 0.34 / 0.23 /
0.25 IoU with 128 / 256 / 512 px tiles, so it is kept only to load old checkpoints.
``"pixel"`` normalises each pixel over its channels (tile-invariant too; measured in
docs/BENCHMARKS.md). Dropout sits in the bottleneck and the decoder, where it expresses
uncertainty about the segmentation rather than about raw pixels.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ml.settings import Range, check_settings, number, one_of, whole

NORMS = ("batch", "pixel", "group", "none")
#: the module that reads the input image (its weight's channels are the model's input channels)
FIRST_CONV = "encoders.0.0"

#: UNet2D's arguments and their allowed values (app.config checks APP_MODEL against them at start-up)
ARCH_RANGES: dict[str, Range] = {"in_channels": whole(1), "n_classes": whole(2), "base": whole(1), "depth": whole(1),
                                 "dropout": number(0, 1, high_open=True), "norm": one_of(NORMS)}


def _groups(channels: int, max_groups: int = 8) -> int:
    """Largest group count <= max_groups that divides ``channels``."""
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


class PixelNorm(nn.Module):
    """LayerNorm over the channels of each pixel (ConvNeXt's LayerNorm2d): no spatial statistics."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "pixel":
        return PixelNorm(channels)
    if kind == "group":
        return nn.GroupNorm(_groups(channels), channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """(conv3x3 -> norm -> ReLU) x 2, optional dropout at the end."""

    def __init__(self, cin: int, cout: int, norm: str, dropout: float = 0.0):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class UNet2D(nn.Module):
    """U-Net with ``depth`` down-samplings; channels ``base * 2**level``; logits out.

    Inputs whose H, W are not multiples of ``2**depth`` are reflection-padded
    internally and the output cropped back, so any size works.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        base: int = 16,
        depth: int = 4,
        dropout: float = 0.1,
        norm: str = "batch",
    ):
        super().__init__()
        check_settings(dict(in_channels=in_channels, n_classes=n_classes, base=base, depth=depth, dropout=dropout,
                            norm=norm), ARCH_RANGES, "UNet2D argument")
        self._config = dict(
            in_channels=int(in_channels), n_classes=int(n_classes), base=int(base),
            depth=int(depth), dropout=float(dropout), norm=str(norm),
        )
        chans = [base * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        cin = in_channels
        for c in chans[:-1]:
            self.encoders.append(ConvBlock(cin, c, norm))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(chans[-2], chans[-1], norm, dropout)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2))
            self.decoders.append(ConvBlock(2 * chans[i], chans[i], norm, dropout))
        self.head = nn.Conv2d(chans[0], n_classes, 1)

    @property
    def config(self) -> dict:
        """JSON-able constructor arguments: ``UNet2D(**model.config)`` rebuilds the architecture."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict) -> "UNet2D":
        """Rebuild from :attr:`config`; unknown keys raise a clear TypeError."""
        return cls(**config)

    @property
    def multiple(self) -> int:
        """Spatial sizes the network handles without padding."""
        return 2 ** self._config["depth"]

    @property
    def receptive_radius(self) -> int:
        """How far (px) an output pixel can see: 3x3 convs add 2**level each, 2x2 pools 2**level.

        Predicting a tile with this much real image around it gives exactly what the whole
        image would (``ml.infer``), since nothing beyond it reaches the pixel.
        """
        depth = self._config["depth"]
        per_level = sum(2**level for level in range(depth))
        return 2 * per_level + per_level + 2 * 2**depth + 2 * per_level

    @property
    def embed_dim(self) -> int:
        """Length of the vector returned by :meth:`embed`."""
        return self._config["base"] * 2 ** self._config["depth"]

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        return self.bottleneck(x), skips

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self._config["in_channels"]:
            raise ValueError(
                f"expected input [N, {self._config['in_channels']}, H, W], got {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution decoder features ``[N, base, H, W]`` before the head.

        Self-supervised pre-training (``ml.pretrain``) puts its own head on them, so the whole
        body it learned, encoder and decoder alike, is what a segmentation model starts from.
        """
        self._check(x)
        x, (h, w) = pad_to_multiple(x, self.multiple)
        x, skips = self._encode(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return x[..., :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled bottleneck features ``[N, embed_dim]`` (for diversity sampling)."""
        self._check(x)
        x, _ = pad_to_multiple(x, self.multiple)
        z, _ = self._encode(x)
        return z.mean(dim=(2, 3))


def pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two axes up to a multiple of ``m`` (reflect, replicate when too small).

    Returns the padded tensor and the original ``(H, W)`` so callers can crop back.
    Padding goes at the bottom/right, so pixel (r, c) keeps its coordinates.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """All dropout layers (any dimensionality) inside ``model``."""
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


@contextlib.contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with only the dropout layers sampling; training flags restored on exit."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    for m in dropout_modules(model):
        m.train()
    try:
        yield model
    finally:
        for m, flag in flags.items():
            m.train(flag)
