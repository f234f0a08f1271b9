"""``python -m bench.self_train``: does self-training on the unlabeled pool steady a first model?

An experiment before any product code (measure, then prescribe). Dev split of stack 1's pool
half only: a first model is fine-tuned from the pre-trained body on ``--patches`` random 128 px
patches of rows y < 384 (exactly ``bench.pretrain``'s draw), then trained ``--extra`` more steps
two ways from the same weights: on its labels alone (the control: what more steps alone do),
and on its labels plus pseudo-labels of every slice's rows y < 384 (pixels whose predicted
probability exceeds ``--fg`` / ``--bg``; half of every batch stays on the true labels). Dev IoU
on rows 384..512 of every slice. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from .norms import DEV_Y, _data
from .pretrain import dev_grid


def dev_iou(model, image: np.ndarray, mask: np.ndarray) -> float:
    from ml.infer import predict_image

    tp = fp = fn = 0
    for z in range(image.shape[0]):
        pred = predict_image(model, image[z, DEV_Y[0]:DEV_Y[1]])["prob"][1] > 0.5
        gt = mask[z, DEV_Y[0]:DEV_Y[1]] > 0
        tp, fp, fn = tp + np.sum(pred & gt), fp + np.sum(pred & ~gt), fn + np.sum(~pred & gt)
    return float(tp / max(tp + fp + fn, 1))


def pseudo_regions(model, image: np.ndarray, fg: float, bg: float) -> list:
    """Every slice's training rows, labeled where the model is confident (0 elsewhere)."""
    from ml.dataset import Region
    from ml.infer import predict_image

    out = []
    for z in range(image.shape[0]):
        prob = predict_image(model, image[z, :DEV_Y[0]])["prob"]
        labels = np.zeros(prob.shape[1:], np.uint8)
        labels[prob[0] > bg] = 1
        labels[prob[1] > fg] = 2
        out.append(Region(image[z, :DEV_Y[0]], labels, z, 0, 0))
    return out


def run(raw: str, labels: str, weights: str, patches: int, steps: int, extra: int, seed: int,
        fg: float, bg: float) -> dict:
    from ml.dataset import FocusSampler, regions_from_patches
    from ml.model import UNet2D
    from ml.pretrain import init_from_pretrained
    from ml.train import TrainConfig, clone_state, train

    torch.set_num_threads(1)
    image, mask = _data(raw, labels)
    grid = dev_grid(image.shape)
    picks = [grid[i] for i in np.random.default_rng(seed).choice(len(grid), patches, replace=False)]
    regions = regions_from_patches(image, mask, picks, offset=1, pad=16)
    torch.manual_seed(seed)
    model = UNet2D(base=8, depth=4)
    init_from_pretrained(model, weights)
    train(model, regions, [], TrainConfig(steps=steps, lr=3e-3, seed=seed, eval_every=steps))
    first, start = dev_iou(model, image, mask), clone_state(model)
    more = TrainConfig(steps=extra, lr=1e-3, seed=seed + 1, eval_every=extra)
    train(model, regions, [], more)
    control = dev_iou(model, image, mask)
    model.load_state_dict(start)
    pseudo = pseudo_regions(model, image, fg, bg)
    share = float(np.mean([np.count_nonzero(r.labels == 2) for r in pseudo])) / pseudo[0].labels.size
    train(model, pseudo + regions, [], more, sampler=FocusSampler(pseudo + regions, regions, share=0.5, seed=seed))
    return {"first": first, "control": control, "self": dev_iou(model, image, mask), "pseudo_fg": share}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.self_train", description=__doc__.split("\n\n")[0])
    p.add_argument("--raw", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--weights", required=True, help="pre-trained body (ml.pretrain) of base 8, depth 4")
    p.add_argument("--patches", type=int, default=20)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--extra", type=int, default=500)
    p.add_argument("--fg", type=float, default=0.9, help="pseudo-label mitochondria above this probability")
    p.add_argument("--bg", type=float, default=0.99, help="pseudo-label background above this probability")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    jobs = [(args.raw, args.labels, args.weights, args.patches, args.steps, args.extra, s, args.fg, args.bg)
            for s in range(args.seeds)]
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        out = list(pool.map(run, *zip(*jobs)))
    print(f"| model ({args.patches} patches) | dev IoU per seed | mean | sd |")
    print("|---|---|---|---|")
    rows = {"first model": "first", f"+{args.extra} steps on its labels": "control",
            f"+{args.extra} steps with pseudo-labels (fg > {args.fg}, bg > {args.bg})": "self"}
    for name, key in rows.items():
        v = [r[key] for r in out]
        print(f"| {name} | {' '.join(f'{x:.3f}' for x in v)} | {np.mean(v):.3f} | {np.std(v):.3f} |")
    print(f"\npseudo-labeled mitochondria: {np.mean([r['pseudo_fg'] for r in out]):.3f} of the training rows' pixels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
