"""Benchmark run folders read back: their summary, the protocol they ran, the first models they saved.

One place knows a run folder's layout (``summary.json``, ``steps<N>/initial_seed<S>.pt`` of a
``bench.initial_steps`` run, ``work/initial_seed<S>.pt`` of a ``bench.al`` one) and the protocol it
was scored with, so ``bench.slice_spread`` and ``bench.ensemble`` score what a run trained, as the
run scored it, and ``bench.al_reuse`` and ``bench.al_pool`` take what a ``bench.al`` run measured.
"""
from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from ml.infer import predict_image
from ml.model import UNet2D

from .al_protocol import PRESETS, Protocol


class RunError(ValueError):
    """A run folder that cannot be read back (the message says what is missing)."""


def steps_dir(run: Path, steps: int) -> Path:
    """Where a run keeps the models it trained for ``steps`` steps."""
    return Path(run) / f"steps{steps}"


def model_file(folder: Path, seed: int) -> Path:
    """A seed's saved first model in ``folder`` (``bench.al``'s work folder, or a run's ``steps_dir``)."""
    return Path(folder) / f"initial_seed{seed}.pt"


#: what writes a run folder of each kind (the message when ``summary.json`` is not there)
RUN_KINDS = {"initial_steps": "a bench.initial_steps --out folder", "al": "a finished bench.al --out folder"}


def read_summary(run: Path, kind: str = "initial_steps") -> dict:
    """A run folder's summary.json (``RunError`` naming the file and the tool that writes it)."""
    path = Path(run) / "summary.json"
    if not path.is_file():
        raise RunError(f"{path} is missing: a run is {RUN_KINDS[kind]}")
    return json.loads(path.read_text())


def run_protocol(summary: dict, tiny: bool = False) -> Protocol:
    """The protocol the run scored with.

    A ``bench.al`` summary records its whole Protocol (fields added since it ran keep their defaults);
    a ``bench.initial_steps`` one its base and split, on the quick (or ``tiny``) preset: the dev
    split's rows of every slice, or the test half's eval slices.
    """
    if "protocol" in summary:
        known = {f.name for f in fields(Protocol)}
        return Protocol(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in summary["protocol"].items()
                           if k in known})
    proto = replace(PRESETS["tiny" if tiny else "quick"], base=summary["base"])
    if summary["split"] == "dev":
        share = summary.get("dev_train_share") or Protocol.dev_train_share     # older summaries: the default split
        proto = replace(proto, dev=True, eval_slices=0, dev_train_share=share)
    return proto


def model_paths(run: Path, summary: dict, steps: int | None = None) -> tuple[int, dict[int, Path]]:
    """(step count, {seed: saved model}) of the run; ``steps`` None: its smallest step count."""
    steps = steps or min((m["steps"] for m in summary["models"]), default=0)
    paths = {m["seed"]: model_file(steps_dir(run, steps), m["seed"]) for m in summary["models"] if m["steps"] == steps}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if not paths or missing:
        raise RunError(f"no saved models for {steps} steps in {run}: {', '.join(missing) or 'none listed'}")
    return steps, dict(sorted(paths.items()))


def load_model(path: Path, proto: Protocol, device: torch.device) -> UNet2D:
    model = UNet2D(base=proto.base, depth=proto.depth, dropout=proto.dropout)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def fg_prob(model: UNet2D, image: np.ndarray, proto: Protocol, device: torch.device) -> np.ndarray:
    """Probability of mitochondria, predicted as the protocol predicts (tiled, ``eval_tile``)."""
    return predict_image(model, image, tile=proto.eval_tile, batch_size=4, device=device)["prob"][1]
