"""``python -m bench.cold_start``: which first patches make a stable first model?

Before any model exists the app suggests patches from image features alone. This compares,
on the dev split of stack 1's pool half (train rows y < 384, score rows 384..512; never the
test half), the first model fine-tuned from the pre-trained body on ``--patches`` patches
picked by: random (the protocol's initial draw), k-means on an untrained network's features
(the app before this benchmark), k-means, TypiClust and core-set (greedy k-center) on the
pre-trained body's features.
Each seed draws its own 1,000 candidates (the protocol's pool size) and clustering seed.
Prints a markdown table: dev IoU per seed, mean, sd, and how many picks hold mitochondria.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from .al_scores import fg_pixels, fg_share
from .norms import _data
from .pretrain import dev_grid, fine_tune

#: arm -> (strategy, features from the pre-trained body?)
ARMS = {
    "random": ("random", False),
    "kmeans_untrained": ("kmeans", False),
    "kmeans": ("kmeans", True),
    "typiclust": ("typiclust", True),
    "coreset": ("coreset", True),
}
POOL = 1000


def pick(image: np.ndarray, weights: str, arm: str, n: int, seed: int) -> list:
    """The arm's ``n`` first patches among a seeded subset of the dev grid."""
    from ml.active import select
    from ml.active.scoring import score_patches
    from ml.model import UNet2D
    from ml.pretrain import init_from_pretrained

    grid = dev_grid(image.shape)
    if arm == "random":  # the exact draw of bench.pretrain's fine-tuning runs
        return [grid[i] for i in np.random.default_rng(seed).choice(len(grid), n, replace=False)]
    strategy, pretrained = ARMS[arm]
    idx = np.sort(np.random.default_rng([seed, 0, 11]).choice(len(grid), min(POOL, len(grid)), replace=False))
    cands = [grid[i] for i in idx]
    torch.manual_seed(seed)
    model = UNet2D(base=8, depth=4)
    if pretrained:
        init_from_pretrained(model, weights)
    scores = score_patches(model, lambda p: image[p.window], cands, mc_passes=0)
    chosen, _ = select(strategy, scores, n, seed=seed)
    return [cands[i] for i in chosen]


def run(raw: str, labels: str, weights: str, arm: str, n: int, steps: int, seed: int) -> dict:
    torch.set_num_threads(1)
    image, mask = _data(raw, labels)
    picks = pick(image, weights, arm, n, seed)
    iou = fine_tune(raw, labels, weights, n, steps, seed, picks=picks)
    return {"iou": iou, "with_fg": fg_share(mask, picks), "fg_px": fg_pixels(mask, picks)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n\n")[0])
    p.add_argument("--raw", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--weights", required=True, help="pre-trained body (ml.pretrain) of base 8, depth 4")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--patches", type=int, default=20)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {', '.join(unknown)}; valid: {', '.join(ARMS)}")
    jobs = [(args.raw, args.labels, args.weights, a, args.patches, args.steps, s) for a in arms
            for s in range(args.seeds)]
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        out = list(pool.map(run, *zip(*jobs)))
    print(f"| first patches | dev IoU per seed ({args.patches} patches, {args.steps} steps) | mean | sd "
          "| picks with mitochondria | mitochondria pixels |")
    print("|---|---|---|---|---|---|")
    for i, arm in enumerate(arms):
        rows = out[i * args.seeds:(i + 1) * args.seeds]
        ious = [r["iou"] for r in rows]
        print(f"| {arm} | {' '.join(f'{x:.3f}' for x in ious)} | {np.mean(ious):.3f} | {np.std(ious):.3f} "
              f"| {np.mean([r['with_fg'] for r in rows]):.2f} | {np.mean([r['fg_px'] for r in rows]):.3f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
