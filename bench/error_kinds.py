"""``python -m bench.error_kinds``: how does a weak first model err, by its boundary or by whole objects?

A first model can be weak by over- or by under-segmenting, and either along the true objects' edges
or with whole objects of its own; a remedy for one (a lower threshold, a prior) worsens another. This
re-scores the models a ``bench.initial_steps`` run saved (nothing is trained) over every slice of the
scored rows and prints per seed: precision and recall, IoU at a few thresholds, the false positives
within ``--near`` px of a true mitochondrion (a bloated edge) and farther (objects of their own), the
missed pixels split the same way around the prediction, and the 2D objects on each side that touch
nothing on the other. Writes ``--run``/error_kinds_steps<N>.json.

    python -m bench.error_kinds --run bench_out/v26_seeds68_inpaint8 --raw R --labels L [--near 3]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from ml.metrics import count_metrics

from .rescore import add_arguments, open_or_exit
from .saved_runs import fg_prob, load_model

THRESHOLDS = (0.3, 0.5, 0.7)
COUNTS = ("tp", "fp", "fn", "fp_near", "fn_near", "objects", "false_objects", "true_objects", "missed_objects")


def _lonely(labels: np.ndarray, n: int, other: np.ndarray) -> int:
    """How many of the ``n`` labeled objects share no pixel with ``other``."""
    touched = np.unique(labels[other & (labels > 0)])
    return n - touched.size


def slice_errors(prob: np.ndarray, truth: np.ndarray, near: int = 3, threshold: float = 0.5) -> dict[str, int]:
    """Counts of one slice (see COUNTS); a pixel is "near" within ``near`` px (8-connected steps) of the other side."""
    pred, truth = prob > threshold, truth.astype(bool)
    grow = np.ones((3, 3), bool)
    close_truth = ndi.binary_dilation(truth, grow, iterations=near) if near > 0 else truth
    close_pred = ndi.binary_dilation(pred, grow, iterations=near) if near > 0 else pred
    fp, fn = pred & ~truth, truth & ~pred
    pred_objects, n_pred = ndi.label(pred)
    true_objects, n_true = ndi.label(truth)
    return {"tp": int((pred & truth).sum()), "fp": int(fp.sum()), "fn": int(fn.sum()),
            "fp_near": int((fp & close_truth).sum()), "fn_near": int((fn & close_pred).sum()),
            "objects": int(n_pred), "false_objects": _lonely(pred_objects, n_pred, truth),
            "true_objects": int(n_true), "missed_objects": _lonely(true_objects, n_true, pred)}


def summarise(c: dict[str, int], ious: dict[float, float]) -> dict[str, float]:
    """The shares a reader compares across seeds, from counts summed over slices."""
    m = count_metrics(c["tp"], c["fp"], c["fn"])
    return {"iou": m["iou"], "precision": m["precision"], "recall": m["recall"],
            "fp_far_share": (c["fp"] - c["fp_near"]) / max(c["fp"], 1),
            "fn_far_share": (c["fn"] - c["fn_near"]) / max(c["fn"], 1),
            "false_object_share": c["false_objects"] / max(c["objects"], 1),
            "missed_object_share": c["missed_objects"] / max(c["true_objects"], 1),
            **{f"iou_at_{t}": v for t, v in ious.items()}}


def model_errors(path: Path, data, proto, device: torch.device, near: int) -> dict:
    """Summed counts at 0.5 and IoUs at THRESHOLDS of one saved model over every slice's scored rows."""
    model = load_model(path, proto, device)
    total = dict.fromkeys(COUNTS, 0)
    at = {t: np.zeros(3, np.int64) for t in THRESHOLDS}
    for z in range(data.image.shape[0]):
        prob, truth = fg_prob(model, data.scored(z), proto, device), data.mask[z, data.split_y:] > 0
        for k, v in slice_errors(prob, truth, near).items():
            total[k] += v
        for t in THRESHOLDS:
            pred = prob > t
            at[t] += ((pred & truth).sum(), (pred & ~truth).sum(), (truth & ~pred).sum())
    ious = {t: count_metrics(*(int(x) for x in v))["iou"] for t, v in at.items()}
    return {"counts": total, **summarise(total, ious)}


def table(rows: dict[int, dict], near: int) -> str:
    head = ("| seed | IoU | precision | recall | IoU at " + " / ".join(map(str, THRESHOLDS)) +
            f" | false positives farther than {near} px from mitochondria | predicted objects touching none "
            f"| missed pixels farther than {near} px from the prediction | mitochondria missed whole |")
    lines = [head, "|" + "---|" * 9]
    for seed, r in rows.items():
        at = " / ".join(f"{r[f'iou_at_{t}']:.3f}" for t in THRESHOLDS)
        lines.append(f"| {seed} | {r['iou']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {at} | "
                     f"{r['fp_far_share']:.0%} | {r['false_object_share']:.0%} | {r['fn_far_share']:.0%} | "
                     f"{r['missed_object_share']:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.error_kinds", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("--near", type=int, default=3, help="px from the other side that still count as its edge")
    args = p.parse_args(argv)
    if args.near < 0:
        p.error("--near must be 0 or more")
    run, data, device = open_or_exit(p, args)
    rows = {seed: model_errors(path, data, run.proto, device, args.near) for seed, path in run.paths.items()}
    print(table(rows, args.near))
    out = run.folder / f"error_kinds_steps{run.steps}.json"
    out.write_text(json.dumps({"run": str(run.folder), "split": run.summary["split"], "steps": run.steps,
                               "near": args.near, "models": {str(s): r for s, r in rows.items()}}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
