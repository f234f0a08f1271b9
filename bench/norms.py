"""``python -m bench.norms``: which normalisation layer, measured on the pool half's dev split.

Trains the benchmark's base-8 U-Net with each ``norm`` on the same random patches of
stack 1's pool half (y < 384), then reports, on the dev strip y 384..512 of every slice
(never the test half): foreground IoU, seconds per training step, and tile dependence,
the largest |delta p| and the mask IoU between 128, 256 and 512 px inference tiles on a
512 x 1024 pool-half slice (pixels within ``border`` px of the image edge left out).
The tile columns are printed for several context widths (px of real image around each
tile; ``None`` = the model's receptive radius, the default). Prints markdown tables; asserts nothing.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from ml.active import candidate_pool
from ml.dataset import regions_from_patches
from ml.infer import predict_image
from ml.io.readers import open_labels, open_volume
from ml.io.normalize import normalize
from ml.model import UNet2D
from ml.train import TrainConfig, train

DEV_Y = (384, 512)
TILES = (128, 256, 512)
CONTEXTS = (0, 32, 64, 96, None)


def _data(raw: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    volume, truth = open_volume(raw), open_labels(labels)
    lo, hi = volume.percentiles()
    image = np.stack([normalize(volume[z], lo, hi) for z in range(volume.shape[0])])[:, :DEV_Y[1]]
    mask = np.stack([np.asarray(truth[z]) != 0 for z in range(truth.shape[0])])[:, :DEV_Y[1]].astype(np.uint8)
    return image, mask


def tile_dependence(model: UNet2D, image: np.ndarray, context: int | None = None, border: int = 16) -> dict:
    """Largest |delta p| and mask IoU between inference tile sizes, with ``context`` px around each tile."""
    probs = {t: predict_image(model, image, tile=t, batch_size=4, context=context)["prob"][1] for t in TILES}
    inner = np.s_[border:-border, border:-border]
    out = {"max_dp": 0.0, "min_mask_iou": 1.0}
    for a in TILES:
        for b in TILES:
            if a >= b:
                continue
            pa, pb = probs[a][inner], probs[b][inner]
            out["max_dp"] = max(out["max_dp"], float(np.abs(pa - pb).max()))
            ma, mb = pa > 0.5, pb > 0.5
            union = np.count_nonzero(ma | mb)
            out["min_mask_iou"] = min(out["min_mask_iou"], np.count_nonzero(ma & mb) / union if union else 1.0)
    return out


def run_one(raw: str, labels: str, norm: str, patches: int, steps: int, seed: int) -> dict:
    torch.set_num_threads(1)
    image, mask = _data(raw, labels)
    grid = candidate_pool(image.shape, size=128, stride=64, y_range=(0, DEV_Y[0] - 0))
    rng = np.random.default_rng(seed)
    picks = [grid[i] for i in rng.choice(len(grid), patches, replace=False)]
    regions = regions_from_patches(image, mask, picks, offset=1, pad=16)
    torch.manual_seed(seed)
    model = UNet2D(base=8, depth=4, dropout=0.1, norm=norm)
    config = TrainConfig(steps=steps, lr=3e-3, batch_size=8, crop=128, seed=seed, eval_every=steps, warmup_steps=10)
    t0 = time.monotonic()
    train(model, regions, [], config)
    step_s = (time.monotonic() - t0) / steps
    tp = fp = fn = 0
    for z in range(image.shape[0]):
        pred = predict_image(model, image[z, DEV_Y[0]:DEV_Y[1]])["prob"][1] > 0.5
        gt = mask[z, DEV_Y[0]:DEV_Y[1]] > 0
        tp, fp, fn = tp + np.sum(pred & gt), fp + np.sum(pred & ~gt), fn + np.sum(~pred & gt)
    mid = image[image.shape[0] // 2]
    tiles = {str(c): tile_dependence(model, mid, c) for c in CONTEXTS}
    return {"norm": norm, "seed": seed, "dev_iou": float(tp / max(tp + fp + fn, 1)), "step_s": step_s, "tiles": tiles}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.norms", description=__doc__.split("\n\n")[0])
    p.add_argument("--raw", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--norms", default="batch,pixel,group")
    p.add_argument("--patches", type=int, default=60)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    jobs = [(args.raw, args.labels, n, args.patches, args.steps, s)
            for s in range(args.seeds) for n in args.norms.split(",")]
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        rows = list(pool.map(run_one, *zip(*jobs)))
    print("| norm | seed | dev IoU | s/step |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['norm']} | {r['seed']} | {r['dev_iou']:.3f} | {r['step_s']:.3f} |")
    print("\nTile dependence between 128, 256 and 512 px tiles: max |delta p| / min mask IoU, by context (px)")
    print("| norm | seed | " + " | ".join(f"context {c if c is not None else 'receptive radius'}" for c in CONTEXTS)
          + " |")
    print("|---|---|" + "---|" * len(CONTEXTS))
    for r in rows:
        cells = [f"{r['tiles'][str(c)]['max_dp']:.4f} / {r['tiles'][str(c)]['min_mask_iou']:.4f}" for c in CONTEXTS]
        print(f"| {r['norm']} | {r['seed']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
