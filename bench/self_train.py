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
from pathlib import Path

import numpy as np
import torch

from .norms import DEV_Y, _data
from .pretrain import dev_grid, dev_iou


def pseudo_regions(model, images: np.ndarray, fg: float, bg: float, device=None) -> list:
    """One region per whole slice of ``images``, labeled where the model is confident (0 elsewhere).

    Whole slices, as this probe was run; the app and ``bench.al --self-train`` use
    ``ml.self_training.pseudo_regions`` (bounded windows, the same probabilities)."""
    from ml.dataset import Region
    from ml.infer import predict_image
    from ml.self_training import pseudo_labels

    return [Region(image, pseudo_labels(predict_image(model, image, device=device)["prob"], fg, bg), z, 0, 0)
            for z, image in enumerate(images)]


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
    pseudo = pseudo_regions(model, image[:, :DEV_Y[0]], fg, bg)
    share = float(np.mean([np.count_nonzero(r.labels == 2) for r in pseudo])) / pseudo[0].labels.size
    train(model, pseudo + regions, [], more, sampler=FocusSampler(pseudo + regions, regions, share=0.5, seed=seed))
    return {"first": first, "control": control, "self": dev_iou(model, image, mask), "pseudo_fg": share}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.self_train", description=__doc__.split("\n\n")[0])
    p.add_argument("--raw", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--weights", help="pre-trained body (ml.pretrain) of base 8, depth 4 (dev split)")
    p.add_argument("--patches", type=int, default=20)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--extra", type=int, default=500)
    p.add_argument("--fg", type=float, default=0.9, help="pseudo-label mitochondria above this probability")
    p.add_argument("--bg", type=float, default=0.99, help="pseudo-label background above this probability")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--protocol-run", help="instead of the dev split: a finished `bench.al --quick` run folder whose "
                                          "initial models (random patches) to continue, scored on the test half")
    args = p.parse_args(argv)
    if not args.protocol_run and not args.weights:
        p.error("--weights is needed on the dev split (or pass --protocol-run)")
    if args.protocol_run:
        fn, jobs = protocol_seed, [(args.raw, args.labels, str(Path(args.protocol_run) / "work"), s, args.extra,
                                    args.fg, args.bg) for s in range(args.seeds)]
    else:
        fn, jobs = run, [(args.raw, args.labels, args.weights, args.patches, args.steps, args.extra, s, args.fg,
                          args.bg) for s in range(args.seeds)]
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        out = list(pool.map(fn, *zip(*jobs)))
    where = "test-half IoU" if args.protocol_run else "dev IoU"
    print(f"| model ({args.patches} patches) | {where} per seed | mean | sd |")
    print("|---|---|---|---|")
    rows = {"first model": "first", f"+{args.extra} steps on its labels": "control",
            f"+{args.extra} steps with pseudo-labels (fg > {args.fg}, bg > {args.bg})": "self"}
    for name, key in rows.items():
        v = [r[key] for r in out]
        print(f"| {name} | {' '.join(f'{x:.3f}' for x in v)} | {np.mean(v):.3f} | {np.std(v):.3f} |")
    if not args.protocol_run:
        print(f"\npseudo-labeled mitochondria: {np.mean([r['pseudo_fg'] for r in out]):.3f} of the training rows' pixels")
    return 0



def protocol_seed(raw: str, labels: str, run_dir: str, seed: int, extra: int, fg: float, bg: float) -> dict:
    """On the quick protocol's split: a finished run's initial model of ``seed`` (20 random patches),
    trained ``extra`` more steps on its labels, and with pseudo-labels of the pool half; test-half IoU."""
    from ml.dataset import FocusSampler
    from ml.train import TrainConfig, clone_state, train

    from . import al_tasks
    from .al_protocol import QUICK, seed_draw

    al_tasks.init_worker(raw, labels, QUICK, run_dir)
    data, proto, device = al_tasks._ctx()
    patches = seed_draw(data, proto, seed).patches
    regions = al_tasks._regions(data, patches, proto)
    model = al_tasks._new_model(proto, seed)
    model.load_state_dict(torch.load(al_tasks._init_path(seed), weights_only=True))
    start = clone_state(model)
    out = {"first": al_tasks.unet_scores(model, data, proto, device)["iou"]}
    more = TrainConfig(steps=extra, lr=proto.round_lr, batch_size=proto.batch, crop=proto.crop, seed=seed + 1,
                       eval_every=extra, warmup_steps=min(10, extra // 5), ema=proto.ema)
    train(model, regions, [], more, device=device)
    out["control"] = al_tasks.unet_scores(model, data, proto, device)["iou"]
    model.load_state_dict(start)
    pseudo = pseudo_regions(model, data.pool, fg, bg, device)
    sampler = FocusSampler(pseudo + regions, regions, share=0.5, crop=proto.crop, seed=seed)
    train(model, pseudo + regions, [], more, device=device, sampler=sampler)
    out["self"] = al_tasks.unet_scores(model, data, proto, device)["iou"]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
