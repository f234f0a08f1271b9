"""``python -m bench.pretrain``: does self-supervised pre-training help, and which pretext task?

Dev split of stack 1's pool half only (never the test half): pre-train on the unlabeled
stack 2 plus stack 1 rows y < 384, fine-tune on ``--patches`` random labeled 128 px patches
of rows y < 384, score foreground IoU on rows 384..512 of every slice, at base 8 without
self-training (the recipe of v6). Variants: from scratch and the pretexts of
``bench.al_pretrain.PRETEXTS``. Prints a markdown table (pre-training seconds, IoU per seed,
mean, sd). The app's recipe (base 16, self-training, the pull) compares pretexts through
``bench.initial_steps --unlabeled U --pretext P``.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ml.io.readers import open_volume
from ml.model import UNet2D
from ml.pretrain import PretrainConfig, Source, init_from_pretrained, pretrain

from .al_pretrain import PRETEXTS
from .norms import DEV_Y, _data



def run_pretrain(raw: str, labels: str, unlabeled: str, variant: str, steps: int, out: Path) -> float:
    torch.set_num_threads(2)
    image, _ = _data(raw, labels)
    extra = open_volume(unlabeled)
    lo, hi = extra.percentiles()
    sources = [Source(image, 0.0, 1.0, (0, DEV_Y[0])), Source(extra, lo, hi)]
    t0 = time.monotonic()
    config = PretrainConfig(steps=steps, cpu_bf16=False, **PRETEXTS[variant])   # fp32, as every run it compares
    pretrain(UNet2D(base=8, depth=4), sources, out, config, resume=False)
    return time.monotonic() - t0


def dev_grid(shape: tuple) -> list:
    """128 px candidate patches of the dev split's training rows (y < 384), stride 64."""
    from ml.active import candidate_pool

    return candidate_pool(shape, size=128, stride=64, y_range=(0, DEV_Y[0]))


def fine_tune(raw: str, labels: str, weights: str | None, patches: int, steps: int, seed: int,
              train_overrides: dict | None = None, picks: list | None = None) -> float:
    """Dev IoU of a model fine-tuned on ``picks`` (default: ``patches`` random grid patches)."""
    from ml.dataset import regions_from_patches
    from ml.train import TrainConfig, train

    torch.set_num_threads(1)
    image, mask = _data(raw, labels)
    if picks is None:
        grid = dev_grid(image.shape)
        picks = [grid[i] for i in np.random.default_rng(seed).choice(len(grid), patches, replace=False)]
    regions = regions_from_patches(image, mask, picks, offset=1, pad=16)
    torch.manual_seed(seed)
    model = UNet2D(base=8, depth=4)
    if weights:
        init_from_pretrained(model, weights)
    train(model, regions, [], TrainConfig(**{"steps": steps, "lr": 3e-3, "seed": seed, "eval_every": steps,
                                             **(train_overrides or {})}))
    return dev_iou(model, image, mask)


def dev_iou(model, image: np.ndarray, mask: np.ndarray) -> float:
    """Foreground IoU of the model on the dev split's scoring rows (384..512) of every slice."""
    from ml.infer import predict_image

    tp = fp = fn = 0
    for z in range(image.shape[0]):
        pred = predict_image(model, image[z, DEV_Y[0]:DEV_Y[1]])["prob"][1] > 0.5
        gt = mask[z, DEV_Y[0]:DEV_Y[1]] > 0
        tp, fp, fn = tp + np.sum(pred & gt), fp + np.sum(pred & ~gt), fn + np.sum(~pred & gt)
    return float(tp / max(tp + fp + fn, 1))


def _fine_tune_all(args: argparse.Namespace, weights: list, overrides: list) -> list[list[float]]:
    """Dev IoU per seed for each (weights, overrides) pair, in that order."""
    jobs = [(args.raw, args.labels, w, args.patches, args.steps, s, o) for w, o in zip(weights, overrides)
            for s in range(args.seeds)]
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        ious = list(pool.map(fine_tune, *zip(*jobs)))
    return [ious[i * args.seeds:(i + 1) * args.seeds] for i in range(len(weights))]


def _cells(row: list[float]) -> str:
    return f"{' '.join(f'{x:.3f}' for x in row)} | {np.mean(row):.3f} | {np.std(row):.3f}"


def compare_settings(args: argparse.Namespace) -> int:
    """Fine-tuning settings from one pre-trained file, seed by seed (initial-model regime)."""
    import json

    variants = [{}] + [json.loads(t) for t in args.train]
    rows = _fine_tune_all(args, [args.weights] * len(variants), variants)
    print(f"| fine-tuning overrides | dev IoU per seed ({args.patches} patches, {args.steps} steps) | mean | sd |")
    print("|---|---|---|---|")
    for v, row in zip(variants, rows):
        print(f"| {json.dumps(v) if v else 'defaults'} | {_cells(row)} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--raw", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--unlabeled", required=True, help="an unlabeled volume of the same tissue (VNC stack 2)")
    p.add_argument("--out", default="bench_out/pretrain")
    p.add_argument("--variants", default="inpaint,denoise", help=f"pretexts to compare, of {', '.join(PRETEXTS)}")
    p.add_argument("--pretrain-steps", type=int, default=1500)
    p.add_argument("--patches", type=int, default=20)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--weights", help="skip pre-training: compare fine-tuning settings from these weights")
    p.add_argument("--train", action="append", default=[],
                   help="with --weights: a JSON object of TrainConfig overrides to compare (repeatable)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    if args.weights:
        return compare_settings(args)
    unknown = sorted(set(args.variants.split(",")) - set(PRETEXTS))
    if unknown:
        p.error(f"--variants: unknown pretext {', '.join(unknown)} (known: {', '.join(PRETEXTS)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights: dict[str, str | None] = {"scratch": None}
    seconds: dict[str, float] = {"scratch": 0.0}
    for v in args.variants.split(","):
        path = out / f"{v}_{args.pretrain_steps}.pt"
        seconds[v] = run_pretrain(args.raw, args.labels, args.unlabeled, v, args.pretrain_steps, path)
        weights[v] = str(path)
        print(f"pre-trained {v}: {seconds[v]:.0f} s", flush=True)
    rows = _fine_tune_all(args, list(weights.values()), [{}] * len(weights))
    print(f"| start | pre-training s | dev IoU per seed ({args.patches} patches, {args.steps} steps) | mean | sd |")
    print("|---|---|---|---|---|")
    for name, row in zip(weights, rows):
        print(f"| {name} | {seconds[name]:.0f} | {_cells(row)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
