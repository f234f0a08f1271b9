"""``python -m bench.postprocess``: what the app's post-processing does to a model's IoU and object count.

The protocol scores a prediction thresholded at 0.5; what a user exports is ``ml.postprocess.segment``'s
objects: holes filled, 3D connected components, objects under a minimum size dropped (the Results panel
offers 50 voxels). This re-scores the models a ``bench.initial_steps`` run saved (nothing is trained):
each predicts every slice of the scored rows, read in z consensus as the app reads it (``--z``), and is
segmented at each ``--min-sizes`` value with and without hole filling. It prints per seed the IoU on the
protocol's scored slices and on every slice, and the paired gain of each setting over the threshold alone.
The truth goes through the same filter first: what a size would drop of the expert's own mitochondria
(the scored rows are half a slice, so objects cut by the split look smaller than they are).
Writes ``--run``/postprocess_steps<N>.json; ``--pool`` summarises several such files as one.

    python -m bench.postprocess --run bench_out/v38_body0_fp32_seeds02 --raw R --labels L
    python -m bench.postprocess --pool bench_out/*/postprocess_steps1000.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ml.metrics import count_metrics
from ml.postprocess import segment
from ml.z_consensus import WEIGHT, check_weight, smooth_z

from .al_protocol import eval_slices
from .paired import paired_stats
from .rescore import add_arguments, open_or_exit
from .saved_runs import fg_prob, load_model, run_protocol

MIN_SIZES = (0, 50, 200, 1000, 3000)


def setting_key(min_size: int, fill: bool) -> str:
    return f"min{min_size}{'_fill' if fill else ''}"


def iou_on(pred: np.ndarray, truth: np.ndarray, slices: list[int]) -> float:
    """IoU of ``pred`` against ``truth`` (Z, Y, X) counted over ``slices`` only."""
    p, t = pred[slices], truth[slices]
    return count_metrics(int((p & t).sum()), int((p & ~t).sum()), int((t & ~p).sum()))["iou"]


def setting_scores(prob: np.ndarray, truth: np.ndarray, min_sizes, slices: dict[str, list[int]]) -> dict:
    """{setting: {slice set: IoU, "objects": n}} of ``prob`` (Z, Y, X) > 0.5 segmented at each min size,
    holes filled or not; ``min0`` without filling is the protocol's own reading. ``objects`` counts the 3D
    objects (what the app's table lists), ``false_objects`` those that touch no true voxel, ``missed_objects``
    the true objects no kept voxel touches."""
    out = {}
    true_objects = segment(truth.astype(np.float32), threshold=0.5, fill_holes=False)
    for fill in (False, True):
        for size in min_sizes:
            labels = segment(prob, threshold=0.5, min_size=size, fill_holes=fill)
            pred = labels > 0
            n = int(labels.max())
            out[setting_key(size, fill)] = {**{name: iou_on(pred, truth, z) for name, z in slices.items()},
                                            "objects": n, "false_objects": n - np.unique(labels[truth & pred]).size,
                                            "missed_objects": int(true_objects.max())
                                            - np.unique(true_objects[truth & pred]).size}
    return out


def _sizes(text: str) -> tuple[int, ...]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--min-sizes takes comma-separated voxel counts, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"a minimum size is 0 or more voxels, got {text!r}")
    return (0, *dict.fromkeys(v for v in values if v != 0))


def _z(text: str) -> float:
    try:
        return check_weight(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _table(rows: dict[str, dict], keys: list[str], names: list[str]) -> str:
    lines = ["| seed | setting | " + " | ".join(f"IoU, {n} slices" for n in names)
             + " | objects (false) | gain over the threshold alone |", "|" + "---|" * (len(names) + 4)]
    for seed, r in rows.items():
        base = r[keys[0]]
        for k in keys:
            gains = " / ".join(f"{r[k][n] - base[n]:+.3f}" for n in names)
            lines.append(f"| {seed} | {k} | " + " | ".join(f"{r[k][n]:.3f}" for n in names)
                         + f" | {r[k]['objects']} ({r[k]['false_objects']}) | {gains} |")
    return "\n".join(lines)


def _means(rows: dict[str, dict], keys: list[str], names: list[str]) -> dict[str, dict[str, float]]:
    """Mean IoU and mean paired gain (``paired_stats``) of each setting over the models, and mean counts."""
    out = {}
    for k in keys:
        out[k] = {}
        for n in names:
            vals = np.array([r[k][n] for r in rows.values()])
            gains = vals - np.array([r[keys[0]][n] for r in rows.values()])
            st = paired_stats(gains) if gains.size > 1 else {"mean": float(gains.mean()), "se": float("nan"),
                                                              "up": int((gains > 0).sum())}
            out[k][n] = {"mean": float(vals.mean()), "gain": st["mean"], "gain_se": st["se"], "up": st["up"]}
        out[k]["objects"] = float(np.mean([r[k]["objects"] for r in rows.values()]))
        for c in ("false_objects", "missed_objects"):
            out[k][c] = float(np.mean([r[k][c] for r in rows.values()]))
    return out


def _print_means(rows: dict[str, dict], keys: list[str], names: list[str], truth_objects: int) -> dict:
    means = _means(rows, keys, names)
    for k in keys:
        print(f"{k}: " + "; ".join(f"{n} slices mean {means[k][n]['mean']:.3f}, gain {means[k][n]['gain']:+.4f} "
                                   f"(se {means[k][n]['gain_se']:.4f}, {means[k][n]['up']} of {len(rows)} up)"
                                   for n in names)
              + f"; objects {means[k]['objects']:.1f} ({means[k]['false_objects']:.1f} false, "
              f"{means[k]['missed_objects']:.1f} true ones missed; the truth has {truth_objects})")
    return means


def pool(paths: list[str]) -> int:
    """Every model of several runs' postprocess JSONs, summarised as one (the runs must share settings and truth)."""
    runs = [json.loads(Path(f).read_text()) for f in paths]
    settings = {(tuple(r["min_sizes"]), r["z"], json.dumps(r["slices"]), r["truth"]["min0"]["objects"]) for r in runs}
    if len(settings) != 1:
        print("error: the files differ in min sizes, z weight, slices or truth: pool runs of one split and settings",
              file=sys.stderr)
        return 2
    if len({r["run"] for r in runs}) != len(runs):
        print("error: a run is given twice: its models would count twice", file=sys.stderr)
        return 2
    first = runs[0]
    keys = [setting_key(s, f) for f in (False, True) for s in first["min_sizes"]]
    rows = {f"{r['run']}:{seed}": m for r in runs for seed, m in r["models"].items()}
    print(f"{len(rows)} models of {len(runs)} runs")
    _print_means(rows, keys, list(first["slices"]), first["truth"]["min0"]["objects"])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--pool"]:
        if len(argv) < 2:
            print("error: --pool takes postprocess_steps<N>.json files", file=sys.stderr)
            return 2
        try:
            return pool(argv[1:])
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: cannot pool {' '.join(argv[1:])}: {exc}", file=sys.stderr)
            return 2
    p = argparse.ArgumentParser(prog="python -m bench.postprocess", description=__doc__.split("\n\n")[0],
                                epilog="python -m bench.postprocess --pool A.json B.json ...: the runs' models "
                                       "summarised as one")
    add_arguments(p)
    p.add_argument("--min-sizes", type=_sizes, default=MIN_SIZES, help="comma-separated voxel counts (0 always)")
    p.add_argument("--z", type=_z, default=WEIGHT, help=f"z consensus weight (default {WEIGHT}, the app's; 0: none)")
    args = p.parse_args(argv)
    run, data, device = open_or_exit(p, args)
    zdim = data.image.shape[0]
    slices = {"scored": eval_slices(zdim, run_protocol(run.summary, args.tiny).eval_slices), "every": list(range(zdim))}
    names = list(slices)
    truth = np.stack([data.mask[z, data.split_y:] > 0 for z in range(zdim)])
    keys = [setting_key(s, f) for f in (False, True) for s in args.min_sizes]
    kernel = setting_scores(truth.astype(np.float32), truth, args.min_sizes, slices)
    print("the truth segmented so, IoU with itself (every slice): "
          + ", ".join(f"{k} {kernel[k]['every']:.3f}" for k in keys), flush=True)
    rows = {}
    for seed, path in run.paths.items():
        model = load_model(path, run.proto, device)
        prob = smooth_z(np.stack([fg_prob(model, data.scored(z), run.proto, device) for z in range(zdim)]),
                        args.z, axis=0)
        rows[str(seed)] = setting_scores(prob, truth, args.min_sizes, slices)
        print(f"seed {seed}: " + ", ".join(f"{k} {rows[str(seed)][k]['scored']:.3f}" for k in keys), flush=True)
    print(_table(rows, keys, names))
    means = _print_means(rows, keys, names, kernel[keys[0]]["objects"])
    out = run.folder / f"postprocess_steps{run.steps}.json"
    out.write_text(json.dumps({"run": str(run.folder), "z": args.z, "min_sizes": list(args.min_sizes),
                               "slices": slices, "truth": kernel, "models": rows, "means": means}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
