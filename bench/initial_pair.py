"""``python -m bench.initial_pair BASE ARM``: one first-model recipe against another, seed by seed.

A first model's IoU moves by about 0.05 with its training seed alone (v16, v17), so two recipes are
compared on the same draws of patches: the per-seed differences, their mean and standard error, and
how many seeds went up. Each side is one or more ``bench.initial_steps`` results (an ``--out`` folder
or a summary JSON kept in docs/benchmarks), joined by commas when their seeds were run apart. The
sides must be scored alike (split, base, dev rows) and hold the same draws, or the difference would
be the draw's, not the recipe's: both are checked and a mismatch is refused with what differs. Sides
whose patches were picked otherwise (``bench.initial_steps --initial``) compare the picking itself: their
seeds pair the same validation patches and training seed, and the draws are what differs.

A recipe that changes the pre-training has a second noise source: the pre-training run itself moves
a body's first models by about 0.01 in the mean (v24). ``--base-body`` and ``--arm-body`` add more
bodies of the same recipe to a side; then the per-seed pairing takes each side's mean over its bodies,
and the bodies' own means are compared as well, with a standard error from their spread (Welch), which
counts that run-to-run noise where the pairing over seeds cannot.

``--metric iou_z`` compares the models as the app reads a prediction (in z consensus with the neighbouring
slices, ``bench.initial_steps``' ``iou_z``) instead of each slice alone.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .al_protocol import PRESETS
from .paired import paired_stats
from .saved_runs import RunError, read_summary, run_protocol


def scored_as(summary: dict) -> dict:
    """What two results must share to be compared seed by seed, besides the draws (older summaries
    leave out the defaults of their day: ``run_protocol`` fills them in)."""
    proto = run_protocol(summary)
    return {"split": summary["split"], "dev_rows": proto.dev_train_share if proto.dev else None,
            "eval_slices": proto.eval_slices, "base": proto.base, "m": summary.get("m", PRESETS["quick"].m)}


METRICS = {"iou": "each slice alone", "iou_z": "in z consensus, as the app reads a prediction"}


def read_side(spec: str, steps: int | None = None, metric: str = "iou") -> tuple[dict, dict[int, dict]]:
    """``(scoring settings, {seed: model row})`` of one side: comma-separated folders or JSON files.
    A row's ``iou`` is its ``metric`` (one of ``METRICS``), so everything after compares that reading."""
    settings: dict | None = None
    rows: dict[int, dict] = {}
    for part in (s.strip() for s in spec.split(",") if s.strip()):
        path = Path(part)
        summary = json.loads(path.read_text()) if path.suffix == ".json" else read_summary(path)
        mine = scored_as(summary)
        if settings is not None and mine != settings:
            raise RunError(f"{part} was scored otherwise than the rest of its side: {mine} against {settings}")
        settings = mine
        models = [m for m in summary["models"] if steps is None or m["steps"] == steps]
        if len({m["steps"] for m in models}) > 1:
            raise RunError(f"{part} holds several step counts ({sorted({m['steps'] for m in models})}): give --steps")
        for m in models:
            if m["seed"] in rows:
                raise RunError(f"seed {m['seed']} is in {part} and in another result of the same side")
            if m.get(metric) is None:
                raise RunError(f"{part} has no {metric} for seed {m['seed']} (scored before that reading existed)")
            rows[m["seed"]] = {**m, "iou": m[metric], "initial": summary.get("initial", "random")}
    if not rows:
        raise RunError(f"no first models in {spec!r}" + (f" at {steps} steps" if steps else ""))
    return settings or {}, rows


def _same_draw(a: dict, b: dict) -> bool:
    return (a["fg_share"], a["fg_pixels"]) == (b["fg_share"], b["fg_pixels"])


def averaged(bodies: list[dict[int, dict]]) -> dict[int, dict]:
    """One row per seed that every body holds: the draw's fields and the bodies' mean IoU. Random draws must
    match; draws picked on a body's features (``--initial``) differ with the body by design."""
    seeds = sorted(set.intersection(*(set(b) for b in bodies)))
    for s in seeds:
        if bodies[0][s]["initial"] == "random" and not all(_same_draw(b[s], bodies[0][s]) for b in bodies):
            raise RunError(f"seed {s} drew other patches in two bodies of one side: not the same draws")
    return {s: {**bodies[0][s], "iou": float(np.mean([b[s]["iou"] for b in bodies]))} for s in seeds}


def between_bodies(base: list[dict[int, dict]], arm: list[dict[int, dict]], seeds: list[int]) -> dict:
    """Each body's mean IoU over ``seeds`` and the difference of the sides' means; its standard error
    and degrees of freedom (Welch-Satterthwaite: with two or three bodies a side a t of 2 is not yet
    significant) need two bodies a side, and are None otherwise."""
    b = np.array([np.mean([body[s]["iou"] for s in seeds]) for body in base])
    a = np.array([np.mean([body[s]["iou"] for s in seeds]) for body in arm])
    out = {"base": b.tolist(), "arm": a.tolist(), "diff": float(a.mean() - b.mean()), "se": None, "df": None}
    if min(a.size, b.size) > 1:
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        out["se"] = float(np.sqrt(va + vb))
        out["df"] = float((va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))) if va + vb > 0 else None
    return out


def paired(base: dict[int, dict], arm: dict[int, dict]) -> dict:
    """The seeds both sides hold, each side's IoUs and the per-seed differences (arm - base)."""
    seeds = sorted(set(base) & set(arm))
    if len(seeds) < 2:
        raise RunError(f"the sides share {len(seeds)} seed(s) ({seeds}): a paired difference needs 2 or more")
    for s in seeds:
        if base[s]["initial"] == arm[s]["initial"] and not _same_draw(base[s], arm[s]):
            raise RunError(f"seed {s} drew other patches on each side: not a paired comparison")
    b = np.array([base[s]["iou"] for s in seeds])
    a = np.array([arm[s]["iou"] for s in seeds])
    d = a - b
    stats = paired_stats(d)
    return {"seeds": seeds, "base": b.tolist(), "arm": a.tolist(), "diff": d.tolist(),
            "base_mean": float(b.mean()), "base_sd": float(b.std()), "arm_mean": float(a.mean()),
            "arm_sd": float(a.std()), "diff_mean": stats["mean"], "diff_se": stats["se"],
            "diff_sd": stats["sd"], "up": stats["up"]}


def row(name: str, p: dict) -> str:
    """A markdown row: the arm's IoU per seed, mean, sd and its paired difference from the base."""
    ious = " ".join(f"{v:.3f}" for v in p["arm"])
    diffs = " ".join(f"{v:+.3f}" for v in p["diff"])
    return (f"| {name} | {ious} | {p['arm_mean']:.3f} | {p['arm_sd']:.3f} | {diffs}: **{p['diff_mean']:+.3f}** "
            f"(standard error {p['diff_se']:.3f}, {p['up']} of {len(p['seeds'])} up) |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.initial_pair", description=__doc__.split("\n\n")[0])
    p.add_argument("base", help="bench.initial_steps results to compare against (folders or JSON, comma-separated)")
    p.add_argument("arm", help="the recipe under test, the same way")
    p.add_argument("--base-body", action="append", default=[], metavar="SPEC",
                   help="another pre-training body of the base recipe (its results, the same way); repeatable")
    p.add_argument("--arm-body", action="append", default=[], metavar="SPEC",
                   help="another pre-training body of the recipe under test; repeatable")
    p.add_argument("--steps", type=int, help="the step count to compare, where a result holds several")
    p.add_argument("--name", default="arm", help="the row's first cell")
    p.add_argument("--metric", choices=sorted(METRICS), default="iou",
                   help="iou: each slice alone; iou_z: in z consensus, as the app reads a prediction")
    args = p.parse_args(argv)
    try:
        sides = [[read_side(spec, args.steps, args.metric) for spec in [first, *more]]
                 for first, more in ((args.base, args.base_body), (args.arm, args.arm_body))]
        scorings = [got for side in sides for got, _ in side]
        other = next((got for got in scorings if got != scorings[0]), None)
        if other is not None:
            raise RunError(f"the results were scored otherwise: {scorings[0]} against {other}")
        base_bodies, arm_bodies = ([rows for _, rows in side] for side in sides)
        result = paired(averaged(base_bodies), averaged(arm_bodies))
        bodies = between_bodies(base_bodies, arm_bodies, result["seeds"])
    except (RunError, OSError, KeyError, json.JSONDecodeError) as exc:
        p.exit(2, f"error: {' '.join(str(exc).split())}\n")
    print(f"read {METRICS[args.metric]} ({args.metric})")
    picks = {side: {rows[s]["initial"] for rows in bodies_ for s in result["seeds"]}
             for side, bodies_ in (("base", base_bodies), ("arm", arm_bodies))}
    if picks["base"] != picks["arm"]:
        print(f"patches picked {'/'.join(sorted(picks['base']))} (base) against {'/'.join(sorted(picks['arm']))} "
              "(arm): each seed pairs its validation patches and training, the draws are the arm")
    print(f"base: {' '.join(f'{v:.3f}' for v in result['base'])}, mean {result['base_mean']:.3f}, "
          f"sd {result['base_sd']:.3f} (seeds {result['seeds'][0]}..{result['seeds'][-1]})")
    print("| first model's start | IoU per seed | mean | sd | paired against the base |")
    print("|---|---|---|---|---|")
    print(row(args.name, result))
    print(f"sd of the per-seed differences: {result['diff_sd']:.3f}")
    if len(base_bodies) + len(arm_bodies) > 2:
        se = ("n/a (one body on a side)" if bodies["se"] is None else f"{bodies['se']:.3f}"
              + (f" ({bodies['df']:.1f} degrees of freedom)" if bodies["df"] is not None else ""))
        print(f"bodies (mean over these seeds): base {' '.join(f'{v:.3f}' for v in bodies['base'])}, "
              f"arm {' '.join(f'{v:.3f}' for v in bodies['arm'])}; difference {bodies['diff']:+.3f}, "
              f"standard error from the bodies' spread {se}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
