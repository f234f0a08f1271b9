"""``python -m bench.quality``: which quality estimate tracks the true IoU? (issue 10)

A simulated user labels VNC stack 1's pool half (rows y < 512) in one of four styles:
``inside`` (strokes deep inside mitochondria and far out in the background: the style that
made the page say 1.000 for a 0.169 model), ``careful`` (strokes that hug boundaries),
``edges`` (pairs of strokes on both sides of the same object edge, as an ilastik user corrects) and
``patches`` (fully labeled random 128 px patches). Each labeling trains a model the
way the app does (held-out split of ``ml.dataset.split_regions``, best validation checkpoint),
then every estimate of ``ml.quality`` is compared with the true foreground IoU on the test
half's evaluation slices (never labeled). Prints one row per run and, per estimate, the
Pearson correlation with the true IoU, the mean absolute error and the worst overstatement.
With ``--self-train`` the estimates read the model before self-training, as the app does (``--read``).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ml.dataset import regions_from_store, split_regions
from ml.infer import predict_image
from ml.metrics import confusion, count_metrics
from ml.quality import Basis, calibrated_iou, class_histograms, estimate_range, expected_iou
from ml.z_consensus import WEIGHT

from .al_protocol import QUICK, load_data
from .al_scores import heldout_prob_scores

BRUSH = 4                    # stroke radius (px), the app's default brush is 8 px wide
STYLES = {"inside": (BRUSH + 4, 14, False), "careful": (BRUSH + 1, BRUSH + 2, True)}   # fg erosion, bg margin, hug


class ArrayStore:
    """The LabelStore reading API over an in-memory (Z, Y, X) label array (0 unlabeled, 1 bg, 2 fg)."""

    def __init__(self, labels: np.ndarray, chunk: int = 64):
        self.labels, self.chunk = labels, chunk

    def labeled_boxes(self) -> list[tuple[int, int, int, int, int]]:
        c, boxes = self.chunk, []
        for z in range(self.labels.shape[0]):
            for y in range(0, self.labels.shape[1], c):
                for x in range(0, self.labels.shape[2], c):
                    ys, xs = np.nonzero(self.labels[z, y:y + c, x:x + c])
                    if ys.size:
                        boxes.append((z, y + ys.min(), y + ys.max() + 1, x + xs.min(), x + xs.max() + 1))
        return boxes

    def read(self, z: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.labels[z, y0:y1, x0:x1]


def _walk(allowed: np.ndarray, start: tuple[int, int], rng: np.random.Generator, length: int = 40) -> list:
    """A smooth random path of ``length`` 3-px steps that stays on ``allowed``."""
    (y, x), angle, path = start, rng.uniform(0, 2 * np.pi), []
    for _ in range(length):
        path.append((y, x))
        angle += rng.normal(0, 0.4)
        ny, nx = int(round(y + 3 * np.sin(angle))), int(round(x + 3 * np.cos(angle)))
        if not (0 <= ny < allowed.shape[0] and 0 <= nx < allowed.shape[1]) or not allowed[ny, nx]:
            angle += np.pi / 2
            continue
        y, x = ny, nx
    return path


def _paint(labels: np.ndarray, path: list, value: int, allowed: np.ndarray) -> None:
    yy, xx = np.ogrid[-BRUSH:BRUSH + 1, -BRUSH:BRUSH + 1]
    disk = yy ** 2 + xx ** 2 <= BRUSH ** 2
    h, w = labels.shape
    for y, x in path:
        y0, y1, x0, x1 = max(0, y - BRUSH), min(h, y + BRUSH + 1), max(0, x - BRUSH), min(w, x + BRUSH + 1)
        d = disk[y0 - y + BRUSH:y1 - y + BRUSH, x0 - x + BRUSH:x1 - x + BRUSH] & allowed[y0:y1, x0:x1]
        labels[y0:y1, x0:x1][d] = value


def strokes(mask: np.ndarray, n: int, style: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` foreground and ``n`` background strokes on random slices of ``mask`` (Z, Y, X)."""
    erode, margin, hug = STYLES[style]
    labels = np.zeros(mask.shape, np.uint8)
    for value, count in ((2, n), (1, n)):
        for _ in range(count):
            for _try in range(50):
                z = int(rng.integers(mask.shape[0]))
                m = mask[z] > 0
                allowed = ndimage.binary_erosion(m, iterations=erode) if value == 2 else \
                    ~ndimage.binary_dilation(m, iterations=margin)
                starts = allowed & ~ndimage.binary_erosion(allowed, iterations=4) if hug else allowed
                ys, xs = np.nonzero(starts)
                if ys.size:
                    i = int(rng.integers(ys.size))
                    _paint(labels[z], _walk(allowed, (int(ys[i]), int(xs[i])), rng), value, allowed)
                    break
    return labels


def _ring(m: np.ndarray, near: int, far: int, inside: bool) -> np.ndarray:
    """Pixels ``near``..``far`` px inside (or outside) the edge of ``m``: where an edge stroke's centre runs."""
    if inside:
        return ndimage.binary_erosion(m, iterations=near) & ~ndimage.binary_erosion(m, iterations=far)
    return ndimage.binary_dilation(m, iterations=far) & ~ndimage.binary_dilation(m, iterations=near)


def edge_strokes(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` pairs of strokes along an object's edge, one just inside (mitochondria), one just outside."""
    labels = np.zeros(mask.shape, np.uint8)
    for _ in range(n):
        for _try in range(50):
            z = int(rng.integers(mask.shape[0]))
            m = mask[z] > 0
            inner, outer = _ring(m, BRUSH + 1, BRUSH + 4, True), _ring(m, BRUSH + 1, BRUSH + 4, False)
            ys, xs = np.nonzero(inner)
            if not ys.size or not outer.any():
                continue
            i = int(rng.integers(ys.size))
            _, (oy, ox) = ndimage.distance_transform_edt(~outer, return_indices=True)
            start = (int(ys[i]), int(xs[i]))
            _paint(labels[z], _walk(inner, start, rng), 2, ndimage.binary_erosion(m, iterations=1))
            _paint(labels[z], _walk(outer, (int(oy[start]), int(ox[start])), rng), 1,
                   ~ndimage.binary_dilation(m, iterations=1))
            break
    return labels


def patches(mask: np.ndarray, n: int, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """``n`` fully labeled random patches (background 1, mitochondria 2)."""
    labels = np.zeros(mask.shape, np.uint8)
    z_, h, w = mask.shape
    for _ in range(n):
        z, y, x = int(rng.integers(z_)), int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        labels[z, y:y + size, x:x + size] = mask[z, y:y + size, x:x + size] + 1
    return labels


def _fit(model, data, train_regions, val_regions, tcfg, seed: int, self_train: bool, warm: bool = False):
    """The app's training: with ``self_train`` the last third of the steps also learn pseudo-labels of the
    pool half (held-out windows and labeled pixels spared, as ``app.services.self_training`` does), even
    where the app's gate (``min_steps``, ``min_dense``) would skip it: this bench measured that gate. A
    ``warm`` start (a continued version) self-trains every step, as the app's."""
    from ml.self_training import GATE_OFF, SelfTrainConfig, pseudo_regions, train_in_phases, window_boxes
    from ml.train import train

    if not self_train:
        return train(model, train_regions, val_regions, tcfg)
    cfg = SelfTrainConfig(**GATE_OFF)
    pool = data.pool
    boxes = window_boxes(pool.shape, cfg, seed)
    return train_in_phases(model, train_regions, val_regions, tcfg, cfg, cfg.self_steps(tcfg.steps, warm=warm),
                           lambda m: pseudo_regions(m, pool, 0.0, 1.0, boxes, cfg, held_out=val_regions,
                                                    known=train_regions))


def pool_truth(model, data, pool_z: list[int], labels: np.ndarray) -> float:
    """The true IoU on the slices the estimate reads (the pool half's ``pool_z``), the labeled pixels left out:
    what the page's number is about, without the test half's shift (1.6x the mitochondria)."""
    counts = sum(np.array(confusion(predict_image(model, data.image[z, :data.split_y])["prob"][1] > 0.5,
                                    data.mask[z, :data.split_y], labels[z] == 0)) for z in pool_z)
    return count_metrics(*map(int, counts[:3]))["iou"]


def run_one(data, weights: str | None, style: str, budget: int, seed: int, steps: int,
            self_train: bool = False, lr: float = 1e-3, base: int = 8, anchor: float = 0.0,
            read: str = "supervised", start: int = 0) -> dict:
    """One labeling, one model, every estimate and the truth. ``start`` > 0 (patches only): the model is a
    continued version, as the app's "Continue from version": a new model of the first ``start`` patches, then
    continued (warm, not pulled) on all ``budget`` of them (the same draws as a new model of ``budget``)."""
    from ml.model import UNet2D
    from ml.pretrain import init_from_pretrained
    from ml.train import TrainConfig, evaluate

    rng = np.random.default_rng(1000 * seed + budget)
    pool_mask = data.mask[:, :data.split_y]
    if style == "patches":
        labels = patches(pool_mask, budget, rng)
    elif style == "edges":
        labels = edge_strokes(pool_mask, budget, rng)
    else:
        labels = strokes(pool_mask, budget, style, rng)
    tcfg = TrainConfig(steps=steps, lr=lr, seed=seed, eval_every=25, anchor=anchor)
    torch.manual_seed(seed)
    model = UNet2D(base=base, depth=4)
    if weights:
        init_from_pretrained(model, weights)
    if start:                               # the parent version, then the continued one (unpulled, as the app)
        rng = np.random.default_rng(1000 * seed + budget)
        first = patches(pool_mask, start, rng)
        more = patches(pool_mask, budget - start, rng)
        assert np.array_equal(np.where(more > 0, more, first), labels), "the parent's patches are not a prefix"
        parent = split_regions(regions_from_store(data.pool, ArrayStore(first), 0.0, 1.0), tcfg.val_fraction, seed)
        model = _fit(model, data, *parent, tcfg, seed, self_train).model
        tcfg = replace(tcfg, anchor=0.0)
    regions = regions_from_store(data.pool, ArrayStore(labels), 0.0, 1.0)
    train_regions, val_regions = split_regions(regions, tcfg.val_fraction, tcfg.seed)
    result = _fit(model, data, train_regions, val_regions, tcfg, seed, self_train, warm=bool(start))
    model = result.model
    reader = result.labels_only if read == "supervised" else model        # the model the estimates read
    truth = heldout_prob_scores(lambda img: predict_image(model, img)["prob"][1], data, WEIGHT)
    pool_z = sorted({int(z) for z in np.linspace(1, data.image.shape[0] - 2, 4)})
    volume, heldout = class_histograms(reader, [data.image[z, :data.split_y] for z in pool_z], val_regions, 1)
    basis = Basis()
    for r in val_regions:
        basis.add(r.labels)
    last = evaluate(reader, val_regions, torch.device("cpu"))["val_iou"] if val_regions else None
    row = {"style": style, "budget": budget, "seed": seed, "start": start, "true": truth["iou"],
           "true_z": truth["iou_z"],
           "true_pool": pool_truth(model, data, pool_z, labels), "read_from": read,
           "shown": result.best_val_iou, "heldout": last, "expected": expected_iou(volume),
           "calibrated": calibrated_iou(volume, heldout), "thin": basis.thin_reason(),
           "basis": basis.__dict__, "labeled_px": int(np.count_nonzero(labels))}
    if reader is not model:                     # how good the model read was: is its estimate right about itself?
        own = heldout_prob_scores(lambda img: predict_image(reader, img)["prob"][1], data, WEIGHT)
        row.update(read_true_z=own["iou_z"], read_true_pool=pool_truth(reader, data, pool_z, labels))
    return row


ESTIMATES = ("shown", "heldout", "expected", "calibrated", "range_low")


def with_range(row: dict) -> dict:
    """The app's range (``ml.quality.estimate_quality``): from the lower to the higher of expected and calibrated."""
    if row.get("expected") is None or row.get("calibrated") is None:
        return {**row, "range_low": None, "range_high": None}
    low, high = estimate_range(row["expected"], row["calibrated"])
    return {**row, "range_low": low, "range_high": high}


def summarize(rows: list[dict]) -> list[str]:
    """Per estimate: n, Pearson r, mean |error|, worst overstatement (on rows where it exists);
    then how often the app's range holds the true IoU, on rows with a trusted basis."""
    rows = [with_range(r) for r in rows]
    out = ["| estimate | runs | Pearson r with true IoU | mean abs error | worst overstatement | "
           "mean abs error, trusted rows only |", "|---|---|---|---|---|---|"]
    for name in ESTIMATES:
        pairs = [(r[name], r["true"]) for r in rows if r[name] is not None]
        trusted = [abs(r[name] - r["true"]) for r in rows if r[name] is not None and not r["thin"]]
        if len(pairs) < 2:
            continue
        est, true = np.array(pairs).T
        corr = float(np.corrcoef(est, true)[0, 1]) if est.std() > 0 else float("nan")
        err = est - true
        out.append(f"| {name} | {len(pairs)} | {corr:.2f} | {np.abs(err).mean():.3f} | {err.max():+.3f} | "
                   f"{np.mean(trusted) if trusted else float('nan'):.3f} ({len(trusted)}) |")
    ranged = [r for r in rows if r["range_low"] is not None and not r["thin"]]
    if ranged:
        held = sum(r["range_low"] <= r["true"] <= r["range_high"] for r in ranged)
        width = np.mean([r["range_high"] - r["range_low"] for r in ranged])
        out.append(f"\nthe app's range held the true IoU in {held} of {len(ranged)} trusted runs "
                   f"(mean width {width:.3f})")
        for key, what in (("true_z", "read in z consensus as the app segments"),
                          ("true_pool", "on the slices the estimate reads (pool half, labels left out)"),
                          ("read_true_z", "the model read (before self-training), z consensus"),
                          ("read_true_pool", "the model read (before self-training), on the slices it reads")):
            read = [r for r in ranged if r.get(key) is not None]   # rows since v40 also score these
            if read:
                low = np.array([r["range_low"] - r[key] for r in read])
                held = sum(r["range_low"] <= r[key] <= r["range_high"] for r in read)
                out.append(f"{what} (mean true IoU {np.mean([r[key] for r in read]):.3f}): the range held it in "
                           f"{held} of {len(read)}; low end mean abs error {np.abs(low).mean():.3f}, "
                           f"worst overstatement {low.max():+.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--raw", required=False)
    p.add_argument("--labels", required=False)
    p.add_argument("--weights", help="pre-trained body (ml.pretrain output) every model starts from")
    p.add_argument("--styles", default="inside,careful,edges,patches")
    p.add_argument("--budgets", default="4,12,30", help="strokes per class (patches: a third of it, at least 2)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (the app's default was 1e-3)")
    p.add_argument("--self-train", action="store_true", help="the last third of the steps with pseudo-labels "
                   "of the pool half, whatever the app's gate says (v11 measured the gate with it)")
    p.add_argument("--base", type=int, default=8, help="U-Net width (the app's is 16; v1-v3 measured 8)")
    p.add_argument("--anchor", type=float, default=0.0, help="pull toward the pre-trained body (the app: 0.5 for "
                   "a new model from the body that self-trains, ml.anchor.start_anchor)")
    p.add_argument("--read", choices=("supervised", "final"), default="supervised",
                   help="the model the estimates read: the one the labels alone made (the app's since v41), "
                   "or the final, self-trained one (v4)")
    p.add_argument("--continue-from", type=int, default=0, metavar="N",
                   help="patches only: each model continues a version of the first N patches (warm start, every "
                   "step self-trained, as the app's Continue from version); 0: new models")
    p.add_argument("--out", default="bench_out/quality.json")
    p.add_argument("--summarize", metavar="JSON", help="only print the summary of a finished run's rows")
    args = p.parse_args(argv)
    if args.summarize:
        print("\n".join(summarize(json.loads(Path(args.summarize).read_text()))))
        return 0
    if not (args.raw and args.labels):
        p.error("--raw and --labels are required (or --summarize a finished run)")
    if args.continue_from and (args.styles != "patches" or
                               min(max(2, int(b) // 3) for b in args.budgets.split(",")) <= args.continue_from):
        p.error("--continue-from needs --styles patches and budgets of more patches than it (a third of each)")
    torch.set_num_threads(args.threads)
    data = load_data(args.raw, args.labels, QUICK)
    rows = []
    for style in args.styles.split(","):
        for b in (int(v) for v in args.budgets.split(",")):
            budget = max(2, b // 3) if style == "patches" else b
            for seed in range(args.seeds):
                t0 = time.monotonic()
                row = with_range(run_one(data, args.weights, style, budget, seed, args.steps, args.self_train,
                                          args.lr, args.base, args.anchor, args.read, args.continue_from))
                row["seconds"] = round(time.monotonic() - t0, 1)
                rows.append(row)
                fmt = {k: ("n/a" if row[k] is None else f"{row[k]:.3f}")
                       for k in ("true", "true_z", "true_pool") + ESTIMATES}
                print(f"{style:8s} budget {budget:3d} seed {seed}: " + " ".join(f"{k} {v}" for k, v in fmt.items())
                      + f" | {row['thin'] or 'basis ok'} ({row['seconds']} s)", flush=True)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(rows, indent=1))
    print("\n".join(summarize(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
