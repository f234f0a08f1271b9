"""Pre-trained weights files as data: their settings, names, info and fit, without torch.

The web server lists a volume's pre-training status on every refresh of the Data panel;
this module answers from the JSON sidecar, so it never has to load torch (``ml.pretrain``
holds the training itself). ``read_payload`` alone imports torch, for the weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ml.files import read_sidecar
from ml.settings import FLAG, Range, check_settings, number, whole

FORMAT = "activeseg-pretrained"
VERSION = 1
#: Architecture keys that must agree between a pre-trained body and the model it initialises.
ARCH_KEYS = ("in_channels", "base", "depth", "norm")


class PretrainError(ValueError):
    """A pre-trained file is missing, corrupt, or made for another architecture."""

#: UNet2D's defaults for ARCH_KEYS (tests/ml/test_pretrain.py checks they match the constructor), so a
#: partial architecture such as the app's ``{"base": 16, "depth": 4}`` compares like the model it builds.
ARCH_DEFAULTS = {"in_channels": 1, "base": 16, "depth": 4, "norm": "batch"}


#: the allowed values of every PretrainConfig field (APP_PRETRAIN is checked against them at start-up)
PRETRAIN_RANGES: dict[str, Range] = {
    "steps": whole(1), "lr": number(0, low_open=True), "batch_size": whole(1), "crop": whole(16), "block": whole(1),
    "mask_ratio": number(0, 1, low_open=True, high_open=True), "noise": number(0), "masked_weight": number(0, 1),
    "seed": whole(0), "save_every": whole(1), "weight_decay": number(0), "warmup_steps": whole(0), "cpu_bf16": FLAG,
    "max_seconds": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0),
                    "null or a number of seconds >= 0"),
}


@dataclass
class PretrainConfig:
    """Pre-training settings (JSON-able; stored in the file)."""

    steps: int = 1500
    lr: float = 3e-3
    batch_size: int = 8
    crop: int = 128
    block: int = 16            # side of a masked square (px)
    mask_ratio: float = 0.35   # share of blocks replaced by noise
    noise: float = 0.05        # max std of the Gaussian noise on visible pixels
    masked_weight: float = 0.8  # loss share of masked pixels (the rest: denoising visible ones)
    seed: int = 0
    save_every: int = 250
    max_seconds: float | None = None   # stop (and save as complete) after this much wall time
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    cpu_bf16: bool = True      # bf16 autocast on a CPU with native bf16 (as TrainConfig.cpu_bf16); CUDA runs fp32

    def __post_init__(self) -> None:
        check_settings(vars(self), PRETRAIN_RANGES, "pre-training setting")
        if self.block > self.crop:
            raise ValueError(f"block={self.block} is not allowed: must be <= crop ({self.crop})")


def partial_path(out: str | Path) -> Path:
    """``encoder.pt`` -> ``encoder.pt.partial``: the resumable snapshot of an unfinished run."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def full_arch(arch: dict) -> dict:
    """``arch`` with UNet2D's defaults for the keys it leaves out."""
    return {**ARCH_DEFAULTS, **dict(arch or {})}


def _agree(key: str, stored, wanted) -> bool:
    """One architecture key fits: equal, or a one-slice body for a model reading neighbour slices too
    (its first convolution is widened: ``ml.slice_context.widen_first_conv``)."""
    if key == "in_channels" and stored == 1 and isinstance(wanted, int) and wanted % 2 == 1:
        return True
    return stored == wanted


def fits(info: dict, arch: dict) -> bool:
    """Whether pre-trained weights (``read_info``) fit a UNet2D built with ``arch``."""
    stored, wanted = full_arch(info.get("config") or {}), full_arch(arch)
    return all(_agree(k, stored.get(k), wanted.get(k)) for k in ARCH_KEYS)


def read_payload(path: Path) -> dict:
    """The whole file, weights too (torch is imported here only: listings use the sidecar)."""
    import torch

    if not path.is_file():
        raise PretrainError(f"no pre-trained weights at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise PretrainError(f"{path} is not readable pre-trained weights ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PretrainError(f"{path} is not an ActiveSeg pre-trained file (written by python -m ml pretrain)")
    return payload


def check_arch(stored: dict, wanted: dict, path: Path) -> None:
    """Raise :class:`PretrainError` naming every architecture key where ``stored`` and ``wanted`` differ."""
    stored, wanted = full_arch(stored), full_arch(wanted)
    diff = {k: (stored.get(k), wanted.get(k)) for k in ARCH_KEYS if not _agree(k, stored.get(k), wanted.get(k))}
    if diff:
        detail = ", ".join(f"{k} {a} here vs {b} wanted" for k, (a, b) in diff.items())
        raise PretrainError(f"{path} was pre-trained for another architecture ({detail})")


def read_info(path: str | Path) -> dict:
    """Everything but the weights (from the sidecar when present), for listings."""
    info = read_sidecar(path, FORMAT)
    if info is not None:
        return info
    return {k: v for k, v in read_payload(Path(path)).items() if k not in ("state_dict", "recon", "optimizer")}
