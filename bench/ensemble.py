"""``python -m bench.ensemble``: does averaging two trainings of the same first patches steady a first model?

A first model from 20 patches moves with its training (v15: up to 0.08 with a re-created
pre-trained body). Each ``--runs`` folder is a ``bench.initial_steps`` run of the same draws (the
same split, seeds, step count and recipe) trained with another ``--train-seed``. Per seed the members'
probabilities of mitochondria are averaged and thresholded at 0.5, as one model's are, and scored
on the rows and slices the runs scored. Prints each member's IoU per seed and the ensemble's, mean
and sd, and the spread split into its sources: one training's own sd (how far a draw's trainings lie
apart: what a steadier recipe must lower) and the draws'. ``--soup`` also scores one model of the
members' averaged weights, which would cost no more than one at inference. Writes it all to the first
run's folder (ensemble_steps<N>.json). Nothing is trained.

    python -m bench.ensemble --runs bench_out/d16_halves,bench_out/d17_halves_t1000 --raw R --labels L
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from ml.device import pick_device
from ml.model import UNet2D

from .al import check_inputs
from .al_protocol import BenchData, Protocol, load_data
from .al_scores import count_scores, slice_counts
from .saved_runs import RunError, fg_prob, load_model, model_paths, read_summary, run_protocol

#: what runs written before the recipe was recorded trained with
DEFAULT_RECIPE = {**Protocol(name="").init_recipe(), "self_train_rounds": Protocol.self_train_rounds}
SAME = ("split", "dev_train_share", "base", "self_train", *DEFAULT_RECIPE)


def recipe(summary: dict) -> dict:
    """What a run's members must share; runs written before ``--lr`` / ``--batch`` / ``--ema`` /
    ``--head-steps`` / ``--anchor`` / ``--self-rounds`` trained with the protocol's."""
    return {**DEFAULT_RECIPE, **{k: summary[k] for k in SAME if k in summary}}


def members(runs: list[Path], steps: int | None, tiny: bool) -> tuple[Protocol, int, dict[int, list[Path]]]:
    """The runs' common protocol, step count and {seed: [one saved model per run]}; they must share the draws."""
    summaries = [read_summary(r) for r in runs]
    first, want = summaries[0], recipe(summaries[0])
    for run, got in zip(runs[1:], map(recipe, summaries[1:])):
        differ = [k for k in SAME if got.get(k) != want.get(k)]
        if differ:
            raise RunError(f"{run} differs from {runs[0]} in {', '.join(differ)}: not members of one ensemble")
    steps, paths0 = model_paths(runs[0], first, steps)
    found = [model_paths(r, s, steps)[1] for r, s in zip(runs, summaries)]
    if any(set(f) != set(paths0) for f in found):
        raise RunError(f"the runs hold different seeds for {steps} steps: {[sorted(f) for f in found]}")
    draws = [{m["seed"]: m["fg_pixels"] for m in s["models"] if m["steps"] == steps} for s in summaries]
    if any(d != draws[0] for d in draws):     # the same seed must have drawn the same patches in every run
        raise RunError("the runs' seeds drew different patches (their fg_pixels differ): not one draw")
    return run_protocol(first, tiny), steps, {seed: [f[seed] for f in found] for seed in paths0}


def weight_average(models: list[UNet2D]) -> UNet2D:
    """One model of the members' averaged weights (a "model soup"): an ensemble's quality at one model's cost,
    if the members share a basin. BatchNorm's batch counter is kept from the first member."""
    states = [m.state_dict() for m in models]
    soup = copy.deepcopy(models[0])
    soup.load_state_dict({k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
                          if v.is_floating_point() else v for k, v in states[0].items()})
    return soup.eval()


def seed_counts(models: list[UNet2D], data: BenchData, proto: Protocol, device: torch.device,
                soup: bool = False) -> np.ndarray:
    """(members + 1 [+ 1], 4) counts over the scored slices: each member's, the mean probability's[, the soup's]."""
    extra = [weight_average(models)] if soup else []
    counts = np.zeros((len(models) + 1 + len(extra), 4), np.int64)
    for z in data.eval_z:
        probs = [fg_prob(m, data.scored(z), proto, device) for m in models]
        rest = [fg_prob(m, data.scored(z), proto, device) for m in extra]
        for i, prob in enumerate([*probs, np.mean(probs, axis=0), *rest]):
            counts[i] += slice_counts(prob > 0.5, data, z)
    return counts


def spread_parts(members: np.ndarray) -> dict[str, float]:
    """Split the seed-to-seed spread of first models into its two sources (``members``: (seeds, trainings)).

    ``training_sd``: a draw's trainings around their mean, pooled over draws (what a steadier recipe must
    lower); ``draw_sd``: the spread left across draws once the training's share of their means' variance
    is taken out; ``one_training_sd``: the sd one training per seed is expected to show, both together.
    """
    seeds, n = members.shape
    train_var = float(np.mean(np.var(members, axis=1, ddof=1))) if n > 1 else 0.0
    draw_var = max(0.0, float(np.var(members.mean(1), ddof=1)) - train_var / n) if seeds > 1 else 0.0
    return {"training_sd": train_var ** 0.5, "draw_sd": draw_var ** 0.5,
            "one_training_sd": (train_var + draw_var) ** 0.5}


def table(ious: np.ndarray, names: list[str], seeds: list[int], parts: dict[str, float]) -> str:
    """``ious`` is (seeds, members + 1 [+ 1]): the columns of ``seed_counts``; ``parts``: ``spread_parts``."""
    n = len(names)
    rows = [*names, f"ensemble of {n} (mean probability)", "weights averaged (one model)"][:ious.shape[1]]
    lines = [f"| model | IoU per seed {' '.join(map(str, seeds))} | mean | sd |", "|---|---|---|---|"]
    for name, col in zip(rows, ious.T):
        lines.append(f"| {name} | {' '.join(f'{x:.3f}' for x in col)} | {col.mean():.3f} | {col.std():.3f} |")
    gain = ious[:, n] - ious[:, :n].mean(1)
    per_seed = " ".join(f"{x:+.3f}" for x in gain)
    lines.append(f"| ensemble - members' mean, per seed | {per_seed} | {gain.mean():+.3f} | |")
    lines.append(f"| sd of one training of a draw / of the draws / expected of one training per seed | | | "
                 f"{parts['training_sd']:.3f} / {parts['draw_sd']:.3f} / {parts['one_training_sd']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, help="comma-separated bench.initial_steps --out folders, one per member")
    p.add_argument("--raw", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--steps", type=int, help="which step count's models (default: the first run's smallest)")
    p.add_argument("--soup", action="store_true", help="also score one model of the members' averaged weights")
    p.add_argument("--device", help="cpu / cuda (default: cuda when present)")
    p.add_argument("--tiny", action="store_true", help="the toy protocol (tests)")
    args = p.parse_args(argv)
    runs = [Path(r) for r in args.runs.split(",") if r.strip()]
    if len(runs) < 2:
        p.error("--runs wants at least two run folders (the ensemble's members)")
    try:
        proto, steps, paths = members(runs, args.steps, args.tiny)
        check_inputs(args.raw, args.labels, proto)
    except (ValueError, OSError) as exc:
        p.exit(2, f"error: {' '.join(str(exc).split())}\n")
    data = load_data(args.raw, args.labels, proto)
    device = pick_device(args.device)
    seeds = list(paths)
    ious = np.array([[count_scores(c)["iou"] for c in
                      seed_counts([load_model(x, proto, device) for x in paths[s]], data, proto, device, args.soup)]
                     for s in seeds])
    parts = spread_parts(ious[:, :len(runs)])
    print(table(ious, [str(r) for r in runs], seeds, parts))
    out = runs[0] / f"ensemble_steps{steps}.json"
    out.write_text(json.dumps({"runs": [str(r) for r in runs], "steps": steps, "seeds": seeds,
                               "members": ious[:, :len(runs)].tolist(), "ensemble": ious[:, len(runs)].tolist(),
                               **parts,
                               "soup": ious[:, len(runs) + 1].tolist() if args.soup else None}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
