"""``python -m bench.postprocess``: what the app's post-processing does to a model's IoU and object count.

The protocol scores a prediction thresholded at 0.5; what a user exports is ``ml.postprocess.segment``'s
objects: holes filled, 3D connected components, objects under a minimum size dropped (the Results panel
offers 50 voxels), and, if asked, objects with no sure core (``--core-thresholds``, hysteresis) or spanning too
few sections (``--min-slices``). This re-scores the models a ``bench.initial_steps`` run saved (nothing is trained):
each predicts every slice of the scored rows, read in z consensus as the app reads it (``--z``), and is
segmented at each ``--min-sizes`` value with and without hole filling, and with holes filled under each core
threshold and section count alone and together. It prints per seed the IoU on the
protocol's scored slices and on every slice, and the paired gain of each setting over the threshold alone.
The truth goes through the same filter first: what a size would drop of the expert's own mitochondria
(the scored rows are half a slice, so objects cut by the split look smaller than they are).
Writes ``--run``/postprocess_steps<N>.json; ``--pool`` summarises several such files as one.

    python -m bench.postprocess --run bench_out/v38_body0_fp32_seeds02 --raw R --labels L
    python -m bench.postprocess --pool bench_out/*/postprocess_steps1000.json [--against min50_fill]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ml.metrics import iou
from ml.postprocess import segment
from ml.z_consensus import WEIGHT, check_weight, smooth_z

from .al_protocol import eval_slices
from .paired import paired_stats
from .rescore import add_arguments, open_or_exit
from .saved_runs import fg_prob, load_model, run_protocol

MIN_SIZES = (0, 50, 200, 1000, 3000)


class Setting(NamedTuple):
    """One reading of a probability map as objects: ``ml.postprocess.segment``'s filters at 0.5."""
    min_size: int
    fill: bool
    core: float | None = None
    slices: int = 1

    @property
    def key(self) -> str:
        core = f"_core{self.core:g}" if self.core is not None else ""
        thin = f"_z{self.slices}" if self.slices > 1 else ""
        return f"min{self.min_size}{'_fill' if self.fill else ''}{core}{thin}"


def settings_for(min_sizes, cores=(), slices=()) -> list[Setting]:
    """Each min size without and with hole filling; then, holes filled, each core threshold and each section
    count alone and together at each min size of at most 200 voxels (past that the size filter rules)."""
    grid = [Setting(m, f) for f in (False, True) for m in min_sizes]
    combos = [(s, 1) for s in cores] + [(None, k) for k in slices] + [(s, k) for s in cores for k in slices]
    return grid + [Setting(m, True, s, k) for m in min_sizes if m <= 200 for s, k in combos]


def iou_on(pred: np.ndarray, truth: np.ndarray, slices: list[int]) -> float:
    """IoU of ``pred`` against ``truth`` (Z, Y, X) counted over ``slices`` only."""
    return iou(pred[slices], truth[slices])


def setting_scores(prob: np.ndarray, truth: np.ndarray, settings, slices: dict[str, list[int]]) -> dict:
    """{setting: {slice set: IoU, "objects": n, ...}} of ``prob`` (Z, Y, X) > 0.5 segmented under each
    :class:`Setting`; ``min0`` without filling is the protocol's own reading. ``objects`` counts the 3D objects
    (what the app's table lists), ``false_objects`` those that touch no true voxel, ``missed_objects`` the true
    objects no kept voxel touches; ``false_share`` and ``missed_share`` weigh them by voxels (of the segmentation,
    of the truth), so a missed sliver counts less than a missed mitochondrion."""
    out = {}
    true_objects = segment(truth.astype(np.float32), threshold=0.5, fill_holes=False)
    true_sizes = np.bincount(true_objects.ravel())
    for st in settings:
        labels = segment(prob, threshold=0.5, min_size=st.min_size, fill_holes=st.fill, core_threshold=st.core,
                         min_slices=st.slices)
        pred = labels > 0
        n = int(labels.max())
        found, hit = np.unique(labels[truth & pred]), np.unique(true_objects[truth & pred])
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        out[st.key] = {**{name: iou_on(pred, truth, z) for name, z in slices.items()},
                       "objects": n, "false_objects": n - found.size, "missed_objects": len(true_sizes) - 1 - hit.size,
                       "false_share": float((sizes[1:].sum() - sizes[found].sum()) / max(sizes[1:].sum(), 1)),
                       "missed_share": float(1 - true_sizes[hit].sum() / max(true_sizes[1:].sum(), 1))}
    return out


def _listed(text: str, flag: str, convert, what: str, valid, rule: str) -> tuple:
    """Comma-separated values of ``flag``, each ``convert``-ed and ``valid``; else an argparse error saying ``rule``."""
    try:
        values = tuple(convert(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag} takes comma-separated {what}, got {text!r}") from None
    if not all(valid(v) for v in values):
        raise argparse.ArgumentTypeError(f"{rule}, got {text!r}")
    return values


def _sizes(text: str) -> tuple[int, ...]:
    values = _listed(text, "--min-sizes", int, "voxel counts", lambda v: v >= 0, "a minimum size is 0 or more voxels")
    return (0, *dict.fromkeys(v for v in values if v != 0))


def _cores(text: str) -> tuple[float, ...]:
    return _listed(text, "--core-thresholds", float, "probabilities", lambda v: 0.5 <= v < 1,
                   "a core threshold lies in [0.5, 1), the segmentation's own threshold up")


def _slices(text: str) -> tuple[int, ...]:
    return _listed(text, "--min-slices", int, "section counts", lambda v: v >= 2,
                   "a section count to require is 2 or more (1 keeps every object)")


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


def _means(rows: dict[str, dict], keys: list[str], names: list[str], base: str | None = None) -> dict:
    """Mean IoU and mean paired gain (``paired_stats``) of each setting over the models against ``base`` (default
    the threshold alone), and mean counts."""
    base = base or keys[0]
    out = {}
    for k in keys:
        out[k] = {}
        for n in names:
            vals = np.array([r[k][n] for r in rows.values()])
            gains = vals - np.array([r[base][n] for r in rows.values()])
            st = paired_stats(gains) if gains.size > 1 else {"mean": float(gains.mean()), "se": float("nan"),
                                                              "up": int((gains > 0).sum())}
            out[k][n] = {"mean": float(vals.mean()), "gain": st["mean"], "gain_se": st["se"], "up": st["up"]}
        out[k]["objects"] = float(np.mean([r[k]["objects"] for r in rows.values()]))
        for c in ("false_objects", "missed_objects", "false_share", "missed_share"):
            if all(c in r[k] for r in rows.values()):  # the shares are v40's; older files lack them
                out[k][c] = float(np.mean([r[k][c] for r in rows.values()]))
    return out


def _print_means(rows: dict[str, dict], keys: list[str], names: list[str], truth_objects: int,
                 base: str | None = None) -> dict:
    means = _means(rows, keys, names, base)
    print(f"gains against {base or keys[0]}")
    for k in keys:
        print(f"{k}: " + "; ".join(f"{n} slices mean {means[k][n]['mean']:.3f}, gain {means[k][n]['gain']:+.4f} "
                                   f"(se {means[k][n]['gain_se']:.4f}, {means[k][n]['up']} of {len(rows)} up)"
                                   for n in names)
              + f"; objects {means[k]['objects']:.1f} ({means[k]['false_objects']:.1f} false, "
              f"{means[k]['missed_objects']:.1f} true ones missed; the truth has {truth_objects})"
              + (f"; voxels in false objects {100 * means[k]['false_share']:.1f} %, of the truth's in missed ones "
                 f"{100 * means[k]['missed_share']:.1f} %" if "missed_share" in means[k] else ""))
    return means


def pool(paths: list[str], against: str | None = None) -> int:
    """Every model of several runs' postprocess JSONs, summarised as one (the runs must share settings and truth);
    gains against the setting ``against`` (default the threshold alone)."""
    runs = [json.loads(Path(f).read_text()) for f in paths]
    for r in runs:  # files written before v40 name min sizes only
        r.setdefault("settings", [st.key for st in settings_for(r["min_sizes"])])
    settings = {(tuple(r["settings"]), r["z"], json.dumps(r["slices"]), r["truth"]["min0"]["objects"]) for r in runs}
    if len(settings) != 1:
        print("error: the files differ in settings, z weight, slices or truth: pool runs of one split and settings",
              file=sys.stderr)
        return 2
    if len({r["run"] for r in runs}) != len(runs):
        print("error: a run is given twice: its models would count twice", file=sys.stderr)
        return 2
    first = runs[0]
    keys = first["settings"]
    if against is not None and against not in keys:
        print(f"error: --against {against} is not a setting of these files: {', '.join(keys)}", file=sys.stderr)
        return 2
    rows = {f"{r['run']}:{seed}": m for r in runs for seed, m in r["models"].items()}
    print(f"{len(rows)} models of {len(runs)} runs")
    _print_means(rows, keys, list(first["slices"]), first["truth"]["min0"]["objects"], against)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--pool"]:
        files, against = argv[1:], None
        if "--against" in files[:-1]:
            at = files.index("--against")
            files, against = files[:at] + files[at + 2:], files[at + 1]
        if not files:
            print("error: --pool takes postprocess_steps<N>.json files [--against SETTING]", file=sys.stderr)
            return 2
        try:
            return pool(files, against)
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: cannot pool {' '.join(argv[1:])}: {exc}", file=sys.stderr)
            return 2
    p = argparse.ArgumentParser(prog="python -m bench.postprocess", description=__doc__.split("\n\n")[0],
                                epilog="python -m bench.postprocess --pool A.json B.json ... [--against SETTING]: "
                                       "the runs' models summarised as one, gains against SETTING (e.g. min50_fill)")
    add_arguments(p)
    p.add_argument("--min-sizes", type=_sizes, default=MIN_SIZES, help="comma-separated voxel counts (0 always)")
    p.add_argument("--core-thresholds", type=_cores, default=(), help="comma-separated peak probabilities an "
                   "object must exceed (hysteresis; e.g. 0.8,0.9)")
    p.add_argument("--min-slices", type=_slices, default=(), help="comma-separated section counts an object must "
                   "span (e.g. 2,3)")
    p.add_argument("--z", type=_z, default=WEIGHT, help=f"z consensus weight (default {WEIGHT}, the app's; 0: none)")
    args = p.parse_args(argv)
    run, data, device = open_or_exit(p, args)
    zdim = data.image.shape[0]
    slices = {"scored": eval_slices(zdim, run_protocol(run.summary, args.tiny).eval_slices), "every": list(range(zdim))}
    names = list(slices)
    truth = np.stack([data.mask[z, data.split_y:] > 0 for z in range(zdim)])
    settings = settings_for(args.min_sizes, args.core_thresholds, args.min_slices)
    keys = [st.key for st in settings]
    kernel = setting_scores(truth.astype(np.float32), truth, settings, slices)
    print("the truth segmented so, IoU with itself (every slice): "
          + ", ".join(f"{k} {kernel[k]['every']:.3f}" for k in keys), flush=True)
    rows = {}
    for seed, path in run.paths.items():
        model = load_model(path, run.proto, device)
        prob = smooth_z(np.stack([fg_prob(model, data.scored(z), run.proto, device) for z in range(zdim)]),
                        args.z, axis=0)
        rows[str(seed)] = setting_scores(prob, truth, settings, slices)
        print(f"seed {seed}: " + ", ".join(f"{k} {rows[str(seed)][k]['scored']:.3f}" for k in keys), flush=True)
    print(_table(rows, keys, names))
    means = _print_means(rows, keys, names, kernel[keys[0]]["objects"])
    out = run.folder / f"postprocess_steps{run.steps}.json"
    out.write_text(json.dumps({"run": str(run.folder), "z": args.z, "min_sizes": list(args.min_sizes), "settings": keys,
                               "slices": slices, "truth": kernel, "models": rows, "means": means}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
