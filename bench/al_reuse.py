"""What a finished ``bench.al`` run already measured, taken instead of trained again (``--reuse RUN``).

A new strategy compared on a run's seeds needs neither their initial models nor random's rounds
again: the protocol is deterministic (v20 retrained v19's models to the same numbers), so
retraining them spends two thirds of a run reproducing rows already on disk. Reused: each seed's
initial model (the weights, to warm-start from, and its IoU), every (seed, strategy) whose rows
the run wrote, the random forest's rows and the pre-trained body. Full supervision is never reused.
A run that scores candidates otherwise (``SCORING``) reuses random's rounds alone of the strategies; one
that trains its rounds otherwise (``ROUND_TRAINING``) reuses no strategy's rounds, only the initial models
and the RF rows, which no round's training touches.
A run from before the z-consensus score (``iou_z``, v30) gives its initial models, scored again,
and its RF rows; its strategy runs are run again.
"""
from __future__ import annotations

import csv
import shutil
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from .al_protocol import Protocol
from .saved_runs import model_file, read_summary

#: Protocol fields a reusing run may change: what it compares and how many processes it uses.
FREE = frozenset({"strategies", "workers", "full_seeds"})
#: ... and how candidates are scored, which only random's rounds never read (so only they are reused).
SCORING = frozenset({"score_context", "score_z"})
#: ... and how each round's model trains, which every strategy's rounds read (random's too).
ROUND_TRAINING = frozenset({"round_steps"})
#: the strategy whose rounds never score a candidate
UNSCORED = "random"


@dataclass
class Reused:
    """Results of the earlier run, keyed as ``run_tasks`` keys its own."""

    run: str
    initial: dict[int, dict] = field(default_factory=dict)           # seed -> initial result
    strategy: dict[tuple[int, str], dict] = field(default_factory=dict)  # (seed, strategy) -> strategy result
    rf: dict[int, dict] = field(default_factory=dict)                # seed -> RF result


def protocol_mismatch(old: dict, proto: Protocol, free: frozenset[str] = FREE) -> list[str]:
    """The fields (beyond ``free``) on which ``proto`` differs from a run's recorded protocol.

    A field the old run did not record was added later, with a default that keeps the old
    behaviour; it matches when ``proto`` keeps that default.
    """
    new = proto.to_dict()
    out = []
    for f in fields(Protocol):
        if f.name in free:
            continue
        default = f.default if f.default is not MISSING else None
        was = old.get(f.name, default)
        now = new[f.name]
        if (list(was) if isinstance(was, (list, tuple)) else was) != (list(now) if isinstance(now, tuple) else now):
            out.append(f"{f.name} {was!r} there, {now!r} here")
    return out


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [{k: (v if k == "strategy" else int(v) if k in ("seed", "round", "n_labeled") else float(v))
                 for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]


def read(run: Path, seeds, strategies, rounds: int, weights: bool = True) -> Reused:
    """The results ``run`` wrote for ``seeds``: initial IoUs (where the model file is kept, or always when
    ``weights`` is False: pooling reads rows only), the complete runs of ``strategies`` and the RF rows, as
    ``run_tasks`` returns them."""
    run = Path(run)
    summary = read_summary(run, "al")
    reused = Reused(str(run))
    mixed = summary.get("z_consensus", {}).get("initial_iou", {})
    for key, iou in summary.get("initial_iou", {}).items():
        seed = int(key)
        if seed in seeds and (not weights or model_file(run / "work", seed).is_file()):
            reused.initial[seed] = {"kind": "initial", "seed": seed, "iou": float(iou)}
            if key in mixed:
                reused.initial[seed]["iou_z"] = float(mixed[key])
    details = _rows(run / "details.csv")
    by_run: dict[tuple[int, str], list[dict]] = {}
    for row in _rows(run / "curves.csv"):
        by_run.setdefault((row["seed"], row["strategy"]), []).append(row)
    for (seed, name), rows in by_run.items():
        if seed not in reused.initial:
            continue
        rows = sorted(rows, key=lambda r: r["round"])
        if name == "rf_baseline":
            reused.rf[seed] = {"kind": "rf", "seed": seed, "rows": rows}
        elif name in strategies and len(rows) == rounds + 1 and all("iou_z" in r for r in rows):
            mine = [d for d in details if d["seed"] == seed and d["strategy"] == name]
            reused.strategy[(seed, name)] = {"kind": "strategy", "seed": seed, "strategy": name, "rows": rows,
                                             "details": mine}
    return reused


def load(run: Path, proto: Protocol, workdir: Path) -> Reused:
    """What ``run`` (a ``bench.al --out`` folder) measured for ``proto``, its weights copied into ``workdir``.

    Raises ``ValueError`` with the reason when the folder is not a finished run of this protocol.
    """
    run = Path(run)
    old = read_summary(run, "al").get("protocol", {})
    diff = protocol_mismatch(old, proto, FREE | SCORING | ROUND_TRAINING)
    if diff:
        raise ValueError(f"--reuse {run} ran another protocol: {'; '.join(diff)}")
    retrained, rescored = protocol_mismatch(old, proto, FREE | SCORING), protocol_mismatch(old, proto)
    kept = () if retrained else (UNSCORED,) if rescored else proto.strategies
    reused = read(run, proto.seed_range, kept, proto.rounds)
    workdir.mkdir(parents=True, exist_ok=True)
    for weights in list((run / "work").glob("pretrained_*")):
        if not (workdir / weights.name).exists():
            shutil.copy2(weights, workdir / weights.name)
    for seed in reused.initial:
        shutil.copy2(model_file(run / "work", seed), model_file(workdir, seed))
    return reused
