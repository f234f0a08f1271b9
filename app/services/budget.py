"""Training in time the user understands: a step count that fits a time budget on this machine.

Steps per second differ by 20x between a laptop CPU and a GPU, so a budget in seconds is turned
into steps by timing a few real training steps of the model about to be trained (on a copy, in
the job, on its device). The estimate shown before a run uses the project's last run's speed.
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any

from app.errors import UserError

#: name -> (label, seconds of training steps). "quick" is the first model: about a minute in all
#: on 2 CPU cores for the demo, reading labels and the quality estimate included.
BUDGETS = {"quick": ("fast first model (≈1 min)", 40.0), "refine": ("refine (≈5 min)", 270.0)}
BY_EPOCHS = "epochs"
CALIBRATION_STEPS = 4          # timed from the end of the first (which pays one-time setup) to the last
HARD_LIMIT = 1.15              # training stops at this multiple of the budget whatever the estimate said
MIN_STEPS = 20
MAX_STEPS = 20_000


def budget_seconds(budget: Any) -> float | None:
    """Seconds of training for a budget name; None for "by epochs"."""
    if budget in (None, "", BY_EPOCHS):
        return None
    if budget not in BUDGETS:
        raise UserError(f"Unknown training budget {budget!r}: choose one of {', '.join([*BUDGETS, BY_EPOCHS])}.")
    return BUDGETS[budget][1]


def seconds_per_step(model: Any, regions: list, tcfg: Any, device: Any) -> float:
    """Seconds per training step, timed on a few real steps of a copy of the model (no validation),
    after the first step, which pays one-time setup (thread pools, memory layout)."""
    from ml.train import train

    probe = replace(tcfg, steps=CALIBRATION_STEPS, warmup_steps=0, eval_every=CALIBRATION_STEPS + 1,
                    max_seconds=None)
    stamps: list[float] = []
    train(copy.deepcopy(model), regions, [], probe, device=device,
          progress=lambda *_: stamps.append(time.monotonic()))
    return (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)


def steps_within(seconds: float, per_step: float) -> int:
    """Steps that fit ``seconds`` at ``per_step`` s each (bounded to a sensible range)."""
    return int(min(MAX_STEPS, max(MIN_STEPS, seconds / max(per_step, 1e-6))))


def last_speed(versions: list[dict]) -> float | None:
    """Seconds per step of the newest finished run (``training.list_versions`` rows), or None."""
    for v in versions:
        if not v.get("cancelled") and v.get("seconds") and v.get("steps"):
            return float(v["seconds"]) / float(v["steps"])
    return None


def estimate_text(speed: float | None, budget: Any) -> str:
    """What a run will cost, in words, before it starts (``speed``: seconds per step, if known)."""
    try:
        seconds = budget_seconds(budget)
    except UserError as e:
        return str(e)
    if seconds is None:
        per = f" (the last run took {speed:.2f} s per step)" if speed else ""
        return f"Length set by epochs over the labeled area{per}."
    if not speed:
        return f"About {seconds:.0f} s of training; the run first measures this machine's speed."
    return f"About {seconds:.0f} s of training: ≈{steps_within(seconds, speed):,} steps at this machine's speed."
