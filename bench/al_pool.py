"""``python -m bench.al_pool RUN RUN ...``: one table from ``bench.al`` runs of one protocol on other seeds.

Three seeds cannot tell a 2 % gain from noise; runs on fresh seeds (``--first-seed``) add seeds, and
their pooled gains (means over every seed, paired gains seed by seed) are what the benchmark report
quotes. Runs must share the protocol but for seeds, strategies, workers and full supervision; a
strategy is pooled over the seeds that ran it, so a gain is read against random on the same seeds
only when both ran there (``--strategies`` keeps the ones every run holds). A run is read from its
``summary.json`` and ``curves.csv`` alone, so the copies in ``docs/benchmarks`` pool too, put in a folder each.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .al_protocol import Protocol, with_overrides
from .al_report import markdown, summarize
from .al_reuse import FREE, protocol_mismatch, read
from .paired import paired_stats
from .saved_runs import read_summary, run_protocol

#: What pooled runs may differ in, beyond what a reusing run may.
POOLED_FREE = FREE | {"seeds", "first_seed"}


def pool(runs: list[Path], strategies: tuple[str, ...] | None = None) -> tuple[dict, Protocol]:
    """Results of every run merged, and the protocol they share (``ValueError`` when they do not)."""
    summaries = [read_summary(r, "al") for r in runs]
    first = run_protocol(summaries[0])
    held = [set(s["protocol"]["strategies"]) for s in summaries]
    names = strategies or tuple(n for n in first.strategies if all(n in h for h in held))
    results: dict = {"initial": {}, "strategy": [], "full": [], "rf": [], "wall_s": 0.0}
    for run, summary in zip(runs, summaries):
        diff = protocol_mismatch(summary["protocol"], first, POOLED_FREE)
        if diff:
            raise ValueError(f"{run} ran another protocol than {runs[0]}: {'; '.join(diff)}")
        proto = run_protocol(summary)
        got = read(run, proto.seed_range, names, proto.rounds, weights=False)
        clash = set(got.initial) & set(results["initial"])
        if clash:
            raise ValueError(f"{run} repeats seeds {sorted(clash)}: pool runs on other seeds")
        results["initial"].update(got.initial)
        results["strategy"] += list(got.strategy.values())
        results["rf"] += list(got.rf.values())
        results["wall_s"] += summary.get("wall_time_s", 0.0)
    seeds = sorted(results["initial"])
    proto = with_overrides(first, strategies=names, seeds=len(seeds), first_seed=seeds[0] if seeds else 0,
                           full_seeds=0)
    results["class_name"] = summaries[0].get("class_name", "foreground")
    return results, proto


def paired_text(gains: dict[str, float]) -> str:
    """Mean of per-seed gains with its standard error: how far the pooled gain is from noise."""
    if len(gains) < 2:
        return "n/a"
    s = paired_stats(gains.values())
    return f"{100 * s['mean']:+.1f} % (se {100 * s['se']:.1f}, {s['up']} of {s['n']} up)"


def start_dependence(initial: dict[str, float], gains: dict[str, float]) -> float | None:
    """Pearson r, over seeds, between the first model's IoU and a strategy's paired gain: whether what a
    strategy buys depends on how good the model it starts from already is (v33). None below 3 seeds."""
    seeds = [s for s in gains if s in initial]
    if len(seeds) < 3:
        return None
    x, y = np.array([initial[s] for s in seeds]), np.array([gains[s] for s in seeds])
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def print_tables(summary: dict, results: dict, proto: Protocol) -> None:
    """The pooled first models, the strategies' table and their paired gains, for one way of scoring."""
    print(f"seeds {sorted(results['initial'])}: initial models {summary['initial_iou_mean']:.3f} "
          f"(sd {summary['initial_iou_sd']:.3f})")
    print(markdown(summary))
    for name, s in summary["strategies"].items():
        curve = " ".join(f"{v:.3f}" for v in s["mean_curve"].values())
        print(f"{name}: mean IoU per budget {curve}; paired gain @ {proto.budgets[proto.mid_round]} "
              f"{paired_text(s['paired_gain_at_mid'])}, @ {proto.budgets[-1]} {paired_text(s['paired_gain_final'])}")
        r = start_dependence(summary["initial_iou"], s["paired_gain_final"] or {})
        if r is not None:
            print(f"  its paired gain @ {proto.budgets[-1]} against the first model's IoU, over seeds: r = {r:+.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.al_pool", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="bench.al --out folders")
    p.add_argument("--strategies", help="comma-separated (default: those every run holds)")
    p.add_argument("--out", help="write the pooled summary here (JSON)")
    args = p.parse_args(argv)
    names = tuple(n.strip() for n in args.strategies.split(",")) if args.strategies else None
    try:
        results, proto = pool([Path(r) for r in args.runs], names)
    except (ValueError, OSError, KeyError) as exc:
        p.exit(2, f"error: {' '.join(str(exc).split())}\n")
    summary = summarize(results, proto)
    summary["pooled_runs"] = args.runs
    print_tables(summary, results, proto)
    if "z_consensus" in summary:
        print(f"with the z consensus (w = {proto.z_consensus:g}), as the app reads a prediction:")
        print_tables({**summary, **summary["z_consensus"]}, results, proto)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
