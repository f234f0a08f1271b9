"""``python -m bench.initial_pair BASE ARM``: one first-model recipe against another, seed by seed.

A first model's IoU moves by about 0.05 with its training seed alone (v16, v17), so two recipes are
compared on the same draws of patches: the per-seed differences, their mean and standard error, and
how many seeds went up. Each side is one or more ``bench.initial_steps`` results (an ``--out`` folder
or a summary JSON kept in docs/benchmarks), joined by commas when their seeds were run apart. The
sides must be scored alike (split, base, dev rows) and hold the same draws, or the difference would
be the draw's, not the recipe's: both are checked and a mismatch is refused with what differs.
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


def read_side(spec: str, steps: int | None = None) -> tuple[dict, dict[int, dict]]:
    """``(scoring settings, {seed: model row})`` of one side: comma-separated folders or JSON files."""
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
            rows[m["seed"]] = m
    if not rows:
        raise RunError(f"no first models in {spec!r}" + (f" at {steps} steps" if steps else ""))
    return settings or {}, rows


def paired(base: dict[int, dict], arm: dict[int, dict]) -> dict:
    """The seeds both sides hold, each side's IoUs and the per-seed differences (arm - base)."""
    seeds = sorted(set(base) & set(arm))
    if len(seeds) < 2:
        raise RunError(f"the sides share {len(seeds)} seed(s) ({seeds}): a paired difference needs 2 or more")
    for s in seeds:
        if (base[s]["fg_share"], base[s]["fg_pixels"]) != (arm[s]["fg_share"], arm[s]["fg_pixels"]):
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
    p.add_argument("--steps", type=int, help="the step count to compare, where a result holds several")
    p.add_argument("--name", default="arm", help="the row's first cell")
    args = p.parse_args(argv)
    try:
        base_settings, base = read_side(args.base, args.steps)
        arm_settings, arm = read_side(args.arm, args.steps)
        if base_settings != arm_settings:
            raise RunError(f"the sides were scored otherwise: {base_settings} against {arm_settings}")
        result = paired(base, arm)
    except (RunError, OSError, KeyError, json.JSONDecodeError) as exc:
        p.exit(2, f"error: {' '.join(str(exc).split())}\n")
    print(f"base: {' '.join(f'{v:.3f}' for v in result['base'])}, mean {result['base_mean']:.3f}, "
          f"sd {result['base_sd']:.3f} (seeds {result['seeds'][0]}..{result['seeds'][-1]})")
    print("| first model's start | IoU per seed | mean | sd | paired against the base |")
    print("|---|---|---|---|---|")
    print(row(args.name, result))
    print(f"sd of the per-seed differences: {result['diff_sd']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
