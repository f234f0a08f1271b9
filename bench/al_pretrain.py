"""The benchmark's self-supervised pre-training: once per run, before any labels, shared by all seeds.

``heldout`` pre-trains only on images whose labels the protocol never scores: the unlabeled
stack (``--unlabeled``) and the pool half of the labeled one. ``transductive`` pre-trains on
the whole labeled volume (raw pixels only), as a user running the app on their volume would:
it is reported as its own row, never mixed with the held-out numbers. The weights are cached
in the run's work folder (and resumed if a run was interrupted); the time is reported apart
from the active-learning wall time.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ml.model import UNet2D
from ml.pretrain import PretrainConfig, Source, partial_path, pretrain, read_info

from .al_protocol import BenchData, Protocol

MODES = ("none", "heldout", "transductive")

#: pretext tasks (``Protocol.pretext``) as PretrainConfig settings, each pinned whole (its block side too), so a
#: change of ml.pretrain's defaults for the app cannot move a benchmark recipe under runs already kept:
#: ``inpaint`` is the protocol's (35 % of 16 px blocks filled in, the visible pixels denoised; ml.pretrain's
#: default today); ``denoise`` drops the blocks (1 % kept, as a ratio of 0 is refused) and learns only to
#: denoise; ``inpaint60`` masks 60 % of the blocks (masked-autoencoder-like ratios); ``inpaint8`` and
#: ``inpaint32`` keep the 35 % but mask 8 or 32 px blocks (less or more context to fill in: a few cristae, or
#: most of a small mitochondrion)
PRETEXTS: dict[str, dict] = {
    "inpaint": {"block": 16},
    "denoise": {"block": 16, "mask_ratio": 0.01, "masked_weight": 0.0},
    "inpaint60": {"block": 16, "mask_ratio": 0.6},
    "inpaint8": {"block": 8},
    "inpaint32": {"block": 32},
}


def sources(data: BenchData, mode: str, unlabeled_volume=None) -> list[Source]:
    """What ``mode`` may see: the test half never under ``heldout``."""
    if mode == "heldout":
        out = [Source(data.image, 0.0, 1.0, (0, data.split_y))]
        if unlabeled_volume is not None:
            lo, hi = unlabeled_volume.percentiles()
            out.append(Source(unlabeled_volume, lo, hi))
        return out
    if mode == "transductive":
        return [Source(data.image, 0.0, 1.0)]
    raise ValueError(f"pretrain mode must be one of {MODES}, got {mode!r}")


def prepare(data: BenchData, proto: Protocol, workdir: Path, unlabeled: str | None = None,
            device: str | None = None, threads: int = 2, log=print) -> tuple[str | None, dict]:
    """Pre-trained weights for this protocol (path or None) and what it cost ``{mode, steps, seconds}``."""
    if proto.pretrain not in MODES:
        raise ValueError(f"pretrain mode must be one of {MODES}, got {proto.pretrain!r}")
    if proto.pretext not in PRETEXTS:
        raise ValueError(f"pretext must be one of {sorted(PRETEXTS)}, got {proto.pretext!r}")
    if proto.pretrain == "none":
        return None, {"mode": "none"}
    extra = None
    if unlabeled and proto.pretrain == "heldout":
        from ml.io.readers import open_volume

        extra = open_volume(unlabeled)
    tag = f"{proto.pretrain}_{'plus-unlabeled' if extra is not None else 'only'}_b{proto.base}d{proto.depth}"
    tag += "" if proto.pretext == "inpaint" else f"_{proto.pretext}"     # the default's file keeps its old name
    tag += f"_seed{proto.pretrain_seed}" if proto.pretrain_seed else ""
    tag += "_bf16" if proto.pretrain_bf16 else ""
    out = Path(workdir) / f"pretrained_{tag}_{proto.pretrain_steps}.pt"
    recipe = {"mode": proto.pretrain, "pretext": proto.pretext, "seed": proto.pretrain_seed,
              "bf16": bool(proto.pretrain_bf16)}
    if out.is_file() and not partial_path(out).exists():
        info = read_info(out)
        log(f"pre-trained weights reused: {out} ({info['steps_done']} steps)")
        return str(out), {**recipe, "steps": info["steps_done"], "seconds": 0.0, "cached": True}
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    start = time.monotonic()
    try:
        with torch.random.fork_rng():
            torch.manual_seed(proto.pretrain_seed)
            model = UNet2D(base=proto.base, depth=proto.depth, dropout=proto.dropout)
        result = pretrain(model, sources(data, proto.pretrain, extra), out,
                          PretrainConfig(steps=proto.pretrain_steps, crop=proto.crop, batch_size=proto.batch,
                                         seed=proto.pretrain_seed, cpu_bf16=bool(proto.pretrain_bf16),
                                         **PRETEXTS[proto.pretext]),
                          device=device,
                          meta={"benchmark": proto.name, **recipe})
    finally:
        torch.set_num_threads(previous)
    seconds = time.monotonic() - start
    log(f"pre-trained ({proto.pretrain}) {result.steps} steps in {seconds:.0f} s, final loss "
        f"{result.final_loss():.4f} (the last 50 steps' mean)")
    return str(out), {**recipe, "steps": result.steps, "seconds": round(seconds, 1), "cached": False}
