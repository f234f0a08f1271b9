"""``python -m bench.live``: what a live update's budget buys, and what it costs.

A simulated user corrects a model in live mode on VNC stack 1's pool half (y < 512; the test
half is never touched): a base model trained on 20 random labeled patches is shown 512 x 512
views; in each view the user paints one stroke at a time on the largest wrong area (a 6 px
brush along its long axis, the true class), and after every stroke the draft is fine-tuned
(``ml.live.fine_tune``, the newest stroke in focus) and the view predicted
(``ml.live.predict_view``). Per fine-tune setting it prints the seconds per update (fine-tune,
predict) and the view's foreground IoU after 0, 1, 3 and all strokes, on one torch thread (a
forked job's setting). ``--app`` times the whole server path instead (``bench.live_app``).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace

import numpy as np
import torch
from scipy import ndimage

from ml.dataset import Region, regions_from_patches
from ml.live import LiveConfig, fine_tune, predict_view
from ml.model import UNet2D

from .norms import DEV_Y, _data

VIEW = 512
BRUSH_RADIUS = 3           # a 6 px brush
STROKE_HALF = 24           # strokes up to 48 px long
MIN_ERROR_PX = 12          # smaller wrong areas are not worth a stroke
VARIANTS = {               # name -> LiveConfig overrides (the default first)
    "default": {},           # since the first sweep: the decoder side only
    "predict only (0 steps)": {"steps": 0},
    "8 steps": {"steps": 8},
    "32 steps": {"steps": 32},
    "decoder only (default)": {"train_layers": "decoder"},
    "head only": {"train_layers": "head"},
    "BatchNorm statistics learn": {"freeze_norm": False},
    "no focus on the newest stroke": {"focus": 0.0},
    "lr 3e-4": {"lr": 3e-4},
    "lr 3e-3": {"lr": 3e-3},
    "all layers (the first default)": {"train_layers": "all"},
    "decoder lr 3e-4": {"lr": 3e-4},
    "decoder no focus": {"focus": 0.0},
    "fp32 (no bf16)": {"cpu_bf16": False},   # the default's steps in fp32 on a CPU with native bf16
}


def base_model(image: np.ndarray, mask: np.ndarray, patches: int, steps: int, seed: int) -> tuple[UNet2D, list]:
    """The app's default U-Net trained on ``patches`` random 128 px patches of rows y < 384."""
    from ml.active import candidate_pool
    from ml.train import TrainConfig, train

    grid = candidate_pool(image.shape, size=128, stride=64, y_range=(0, DEV_Y[0]))
    picks = [grid[i] for i in np.random.default_rng(seed).choice(len(grid), patches, replace=False)]
    regions = regions_from_patches(image, mask, picks, offset=1, pad=16)
    torch.manual_seed(seed)
    model = UNet2D()
    train(model, regions, [], TrainConfig(steps=steps, lr=3e-3, seed=seed, eval_every=steps))
    return model, regions


def views(shape: tuple[int, int, int], n: int) -> list[tuple[int, tuple[int, int, int, int]]]:
    """``n`` (z, box) views of VIEW px, spread over slices and both halves of the width."""
    zs = np.linspace(1, shape[0] - 2, n).round().astype(int)
    return [(int(z), (0, VIEW, (i % 2) * (shape[2] - VIEW), (i % 2) * (shape[2] - VIEW) + VIEW))
            for i, z in enumerate(zs)]


def next_stroke(pred: np.ndarray, truth: np.ndarray, labeled: np.ndarray) -> tuple[int, np.ndarray] | None:
    """``(label value, pixel mask)`` of a stroke on the largest unlabeled wrong area, or None."""
    wrong, count = ndimage.label((pred != truth) & ~labeled)
    if count == 0:
        return None
    sizes = ndimage.sum(np.ones_like(wrong), wrong, range(1, count + 1))
    best = int(np.argmax(sizes))
    if sizes[best] < MIN_ERROR_PX:
        return None
    area = wrong == best + 1
    dist = ndimage.distance_transform_edt(area)
    cy, cx = np.unravel_index(int(np.argmax(dist)), area.shape)
    ys, xs = np.nonzero(area)
    axis = np.linalg.svd(np.cov(np.stack([ys, xs])) + 1e-6 * np.eye(2))[0][:, 0] if len(ys) > 2 else (0.0, 1.0)
    t = np.linspace(-STROKE_HALF, STROKE_HALF, 2 * STROKE_HALF + 1)
    line = np.zeros_like(area)
    py = np.clip(np.round(cy + t * axis[0]).astype(int), 0, area.shape[0] - 1)
    px = np.clip(np.round(cx + t * axis[1]).astype(int), 0, area.shape[1] - 1)
    line[py, px] = True
    stroke = ndimage.binary_dilation(line, iterations=BRUSH_RADIUS) & area
    return (2 if truth[cy, cx] else 1), stroke


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


def session(base: UNet2D, regions: list, image: np.ndarray, mask: np.ndarray, z: int, box: tuple,
            cfg: LiveConfig, strokes: int, seed: int) -> dict:
    """One view corrected stroke by stroke: IoU after each, seconds per fine-tune and prediction."""
    model = copy.deepcopy(base)
    y0, y1, x0, x1 = box
    truth = mask[z, y0:y1, x0:x1] > 0
    labels = np.zeros(truth.shape, np.uint8)
    pred = predict_view(model, image, z, box, 0.0, 1.0)["prob"][1] > 0.5
    out = {"iou": [_iou(pred, truth)], "fine_tune_s": [], "predict_s": []}
    for k in range(strokes):
        found = next_stroke(pred, truth, labels > 0)
        if found is None:
            break
        value, stroke = found
        labels[stroke] = value
        view_region = Region(image[z, y0:y1, x0:x1], labels.copy(), z, y0, x0)
        sy, sx = ndimage.find_objects(stroke.astype(np.uint8))[0]
        focus = Region(image[z, y0:y1, x0:x1][sy, sx], labels[sy, sx], z, y0 + sy.start, x0 + sx.start)
        t = time.monotonic()
        fine_tune(model, regions + [view_region], [focus], cfg, seed=seed + k)
        out["fine_tune_s"].append(time.monotonic() - t)
        t = time.monotonic()
        pred = predict_view(model, image, z, box, 0.0, 1.0)["prob"][1] > 0.5
        out["predict_s"].append(time.monotonic() - t)
        out["iou"].append(_iou(pred, truth))
    return out


def sweep(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    image, mask = _data(args.raw, args.labels)
    t = time.monotonic()
    base, regions = base_model(image, mask, args.patches, args.base_steps, args.seed)
    print(f"base model: {args.patches} patches, {args.base_steps} steps, {time.monotonic() - t:.0f} s", flush=True)
    rows = []
    for name in args.variants.split(","):
        cfg = replace(LiveConfig(), **VARIANTS[name])
        runs = [session(base, regions, image, mask, z, box, cfg, args.strokes, args.seed)
                for z, box in views(image.shape, args.views)]
        rows.append(_summary(name, cfg, runs, args.strokes))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _summary(name: str, cfg: LiveConfig, runs: list[dict], strokes: int) -> dict:
    def at(k: int) -> float:
        return float(np.mean([r["iou"][min(k, len(r["iou"]) - 1)] for r in runs]))

    ft = [s for r in runs for s in r["fine_tune_s"]]
    pr = [s for r in runs for s in r["predict_s"]]
    return {"variant": name, "config": {k: v for k, v in VARIANTS[name].items()}, "steps": cfg.steps,
            "fine_tune_s": float(np.median(ft)) if ft else 0.0, "predict_s": float(np.median(pr)) if pr else 0.0,
            "iou_0": at(0), "iou_1": at(1), "iou_3": at(3), f"iou_{strokes}": at(strokes),
            "strokes_made": int(np.mean([len(r["fine_tune_s"]) for r in runs]))}


def table(rows: list[dict], strokes: int) -> str:
    head = (f"| setting | steps | fine-tune s | predict s | view IoU: before | 1 stroke | 3 strokes | "
            f"{strokes} strokes | gain |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['steps']} | {r['fine_tune_s']:.2f} | {r['predict_s']:.2f} | "
                     f"{r['iou_0']:.3f} | {r['iou_1']:.3f} | {r['iou_3']:.3f} | {r[f'iou_{strokes}']:.3f} | "
                     f"{r[f'iou_{strokes}'] - r['iou_0']:+.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__.split("\n\n")[0])
    p.add_argument("--raw", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--strokes", type=int, default=5)
    p.add_argument("--patches", type=int, default=20)
    p.add_argument("--base-steps", type=int, default=400)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a forked job runs with 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--app", action="store_true", help="time the server path instead (bench.live_app)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="with --app: the app's APP_DEVICE (auto: CUDA when present, the <= 1 s target)")
    p.add_argument("--app-live", type=json.loads, default={}, metavar="JSON",
                   help='with --app: the app\'s APP_LIVE, e.g. \'{"cpu_bf16": false}\' (default: the app\'s)')
    p.add_argument("--out", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.app:
        from .live_app import run

        return run(args)
    rows = sweep(args)
    print(table(rows, args.strokes))
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
