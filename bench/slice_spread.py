"""``python -m bench.slice_spread``: how much of the first models' spread is the few slices scored?

The quick protocol scores 4 slices of the test half. A seed-to-seed sd measured on 4 slices mixes
the models' own spread with the slices' sampling noise. This re-scores the models a
``bench.initial_steps`` run saved on every slice of its scored rows (nothing is trained) and prints,
per seed: IoU on all slices, on the protocol's ``--slices`` evenly spaced ones, and over every
subset of that many slices (5,000 drawn when there are more) how far the sd across seeds and the
weakest seed's IoU move. Writes ``--run``/slice_spread_steps<N>.json. Reading a test-half run
this way reads its 16 unscored slices: a diagnosis of the measurement, not a place to choose a recipe.

    python -m bench.slice_spread --run bench_out/d16_halves --raw R --labels L [--slices 4] [--steps 1000]
"""
from __future__ import annotations

import argparse
import itertools
import json
from math import comb
from pathlib import Path

import numpy as np
import torch


from .al_protocol import PRESETS, BenchData, Protocol, eval_slices
from .al_scores import count_scores, slice_counts
from .rescore import add_arguments, open_or_exit
from .saved_runs import fg_prob, load_model

MAX_SUBSETS = 5000
TARGET_SD = 0.05    # issue 8's initial-model target: sd across seeds at most this


def model_counts(path: Path, data: BenchData, proto: Protocol, device: torch.device) -> np.ndarray:
    """(slices, 4) counts (tp, fp, fn, tn) of one saved model on every slice's scored rows."""
    model = load_model(path, proto, device)
    return np.stack([slice_counts(fg_prob(model, data.scored(z), proto, device) > 0.5, data, z)
                     for z in range(data.image.shape[0])])


def subsets(n: int, k: int, limit: int = MAX_SUBSETS, seed: int = 0) -> list[tuple[int, ...]]:
    """Every ``k``-subset of ``n`` slices, or ``limit`` distinct ones drawn when there are more."""
    if comb(n, k) <= limit:
        return list(itertools.combinations(range(n), k))
    rng, seen = np.random.default_rng(seed), set()
    while len(seen) < limit:
        seen.add(tuple(sorted(rng.choice(n, k, replace=False).tolist())))
    return sorted(seen)


def spread(counts: np.ndarray, k: int) -> dict:
    """IoU per seed on all slices and on the protocol's ``k``, and the spread over ``k``-slice subsets.

    ``counts`` is (seeds, slices, 4).
    """
    def ious(zs) -> np.ndarray:
        return np.array([count_scores(c[list(zs)].sum(0))["iou"] for c in counts])
    n = counts.shape[1]
    chosen = eval_slices(n, k)
    per_subset = np.array([ious(zs) for zs in subsets(n, k)])      # (subsets, seeds)
    sds, lows = per_subset.std(1), per_subset.min(1)
    return {"all": ious(range(n)).tolist(), "eval_z": chosen, "protocol": ious(chosen).tolist(),
            "subsets": len(per_subset), "sd_median": float(np.median(sds)), "sd_p90": float(np.percentile(sds, 90)),
            "sd_max": float(sds.max()), "sd_over_target": float((sds > TARGET_SD).mean()),
            "low_median": float(np.median(lows)), "low_p5": float(np.percentile(lows, 5)), "low_min": float(lows.min())}


def table(r: dict, seeds: list[int], n: int, k: int) -> str:
    def row(name: str, v: list[float]) -> str:
        return f"| {name} | {' '.join(f'{x:.3f}' for x in v)} | {np.mean(v):.3f} | {np.std(v):.3f} |"
    z = " ".join(map(str, r["eval_z"]))
    return "\n".join([
        f"| slices scored | IoU per seed {' '.join(map(str, seeds))} | mean | sd |", "|---|---|---|---|",
        row(f"all {n}", r["all"]), row(f"the protocol's {k} (z {z})", r["protocol"]),
        f"| any {k} of {n} ({r['subsets']:,} subsets): sd median / 90th pct / max, share > {TARGET_SD} | "
        f"{r['sd_median']:.3f} / {r['sd_p90']:.3f} / {r['sd_max']:.3f}, {r['sd_over_target']:.0%} | | |",
        f"| any {k} of {n}: weakest seed's IoU median / 5th pct / min | "
        f"{r['low_median']:.3f} / {r['low_p5']:.3f} / {r['low_min']:.3f} | | |"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.slice_spread", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("--slices", type=int, default=PRESETS["quick"].eval_slices, help="slices the protocol scores")
    args = p.parse_args(argv)
    saved, data, device = open_or_exit(p, args)     # every slice of the scored rows; chosen subsets after
    run, summary, steps, paths, proto = saved.folder, saved.summary, saved.steps, saved.paths, saved.proto
    seeds = list(paths)
    n = data.image.shape[0]
    if not 0 < args.slices <= n:
        p.error(f"--slices must lie in 1..{n} (the volume's slices)")
    counts = np.stack([model_counts(x, data, proto, device) for x in paths.values()])
    result = {"run": str(run), "split": summary["split"], "steps": steps, "seeds": seeds, "slices": args.slices,
              **spread(counts, args.slices)}
    print(table(result, seeds, n, args.slices))
    out = run / f"slice_spread_steps{steps}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
