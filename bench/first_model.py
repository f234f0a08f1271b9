"""``python -m bench.first_model``: wall time of the app's first model on the demo, by budget.

Builds the synthetic demo in a temporary workspace (the app's default shape), paints strokes
as a new user would on the middle slice (lines inside the largest mitochondria and in the
background well away from them), then runs the Training panel's job (``train_model``) with
each budget and prints: total seconds (reading labels, measuring the speed, training, quality
estimate and ground-truth IoU included), steps, training seconds and the IoU against the
demo's ground truth. ``--pretrain`` first runs the app's pre-training job on the demo, as a
user who waits for it gets it. Asserts nothing (issue 10: a first model in <= 60 s on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from ml.self_training import GATE_OFF


def _runs(mask: np.ndarray, n: int) -> list[tuple[int, int, int]]:
    """(row, col0, col1) of a horizontal run through the middle of the ``n`` largest regions of ``mask``."""
    lab, count = ndimage.label(mask)
    sizes = ndimage.sum(mask, lab, range(1, count + 1))
    out = []
    for idx in np.argsort(sizes)[::-1][:n]:
        rows = np.nonzero((lab == idx + 1).any(axis=1))[0]
        r = int(rows[len(rows) // 2])
        cols = np.nonzero(lab[r] == idx + 1)[0]
        if len(cols) >= 4:
            out.append((r, int(cols[0]), int(cols[-1])))
    return out


def paint_like_a_user(config, vid: int, gt: np.ndarray, z: int, n: int = 6) -> int:
    """Strokes inside objects and in far background on slice ``z``; returns the count."""
    from app.services import labels, projects

    value = {c["name"]: i + 1 for i, c in enumerate(projects.get_classes(config, vid))}
    fg, bg = value["mitochondria"], value["background"]
    inside = ndimage.binary_erosion(gt[z] > 0, iterations=3)
    far = ndimage.distance_transform_edt(gt[z] == 0) > 8
    far_rows = ndimage.binary_erosion(far, np.ones((1, 25), bool))
    strokes = [(fg, r, a, b) for r, a, b in _runs(inside, n)] + [(bg, r, a, b) for r, a, b in _runs(far_rows, n)]
    for value, r, a, b in strokes:
        labels.apply_stroke(config, vid, z, f"M{a},{r}L{b},{r}", value, 3)
    return len(strokes)


#: --self-train: the app's settings, self-training forced (its gate off), none
SELF_TRAIN_MODES = {"app": {}, "on": dict(GATE_OFF), "off": {"enabled": False}}


def _whole_numbers(p: argparse.ArgumentParser, flag: str, text: str, low: int) -> list[int | None]:
    """``--flag 4,8`` as ``[4, 8]``; empty: ``[None]`` (the app's default); a usage error below ``low``."""
    if not text:
        return [None]
    if not all(v.isdigit() and int(v) >= low for v in text.split(",")):
        p.error(f"--{flag} takes whole numbers >= {low}, e.g. 8,16, got {text!r}")
    return [int(v) for v in text.split(",")]


def _settings(p: argparse.ArgumentParser, flag: str, text: str, high: float = float("inf")) -> list[float | None]:
    """``--anchor 0,0.5`` as ``[0.0, 0.5]``; empty: ``[None]`` (the app's own value)."""
    if not text:
        return [None]
    try:
        values = [float(v) for v in text.split(",")]
        if min(values) < 0 or max(values) > high:
            raise ValueError(text)
    except ValueError:
        upto = "" if high == float("inf") else f" and <= {high:g}"
        p.error(f"--{flag} takes numbers >= 0{upto}, e.g. 0,0.5, got {text!r}")
    return values


def _lengths(p: argparse.ArgumentParser, text: str) -> list[tuple[str, dict]]:
    """``--budgets quick,200`` as ``(name, train_model keyword)``: a time budget or a fixed step count."""
    from app.services.budget import BUDGETS

    out = []
    for name in text.split(","):
        if name in BUDGETS:
            out.append((name, {"budget": name}))
        elif name.isdigit() and int(name) > 0:
            out.append((name, {"steps": int(name)}))
        else:
            p.error(f"--budgets takes {', '.join(BUDGETS)} or step counts, got {text!r}")
    return out


def _shown(value: float | None) -> str:
    return "default" if value is None else str(value)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", default="quick,refine", help="the app's time budgets and/or fixed step counts, "
                   "e.g. quick,200,400 (a step count measures quality apart from this machine's speed)")
    p.add_argument("--batch", default="", help="batch sizes to compare, e.g. 4,8 (default: the app's)")
    p.add_argument("--seed", default="", help="training seeds to compare, e.g. 0,1 (default: the app's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--self-train", default="app", help="app (the app's settings, gate included), on (forced, "
                   "gate off), off, or several, e.g. on,off")
    p.add_argument("--lr", default="", help="learning rates to compare, e.g. 1e-3,3e-3 (default: the app's)")
    p.add_argument("--base", default="", help="U-Net widths to compare, e.g. 8,16 (default: the app's)")
    p.add_argument("--anchor", default="", help="pulls toward the start to compare, e.g. 0,0.5 (default: the "
                   "app's, ml.anchor.start_anchor: 0.5 from a pre-trained body when the run self-trains, else 0)")
    p.add_argument("--zoom", default="", help="zoom augmentations to compare, e.g. 0,0.25 (default: the app's, "
                   "ml.train.TrainConfig.zoom)")
    p.add_argument("--cpu-bf16", default="", help="bf16 training on a CPU with native bf16 to compare, 0,1 "
                   "(default: the app's, TrainConfig.cpu_bf16; a no-op on a CPU without it)")
    p.add_argument("--pretrain", action="store_true", help="run the app's pre-training job on the demo first, "
                   "as a user who waits for it does (new models of its width then start from it)")
    args = p.parse_args(argv)
    if set(args.self_train.split(",")) - set(SELF_TRAIN_MODES):
        p.error(f"--self-train takes {', '.join(SELF_TRAIN_MODES)}, got {args.self_train!r}")
    bases, batches, seeds = (_whole_numbers(p, f, getattr(args, f), low) for f, low in
                             (("base", 1), ("batch", 1), ("seed", 0)))
    lengths = _lengths(p, args.budgets)
    anchors, zooms = _settings(p, "anchor", args.anchor), _settings(p, "zoom", args.zoom, high=1.0)
    precisions = [None if v is None else bool(v) for v in _settings(p, "cpu-bf16", args.cpu_bf16, high=1.0)]
    import torch

    from app.config import Config
    from app.demo import ensure_demo
    from app.services import pretraining, projects, self_training, training

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(workspace=Path(tmp) / "ws", demo="synthetic")
        t0 = time.monotonic()
        proj = ensure_demo(cfg)
        vid = projects.list_volumes(cfg, proj["id"])[0]["id"]
        print(f"demo {tuple(cfg.demo_shape)} generated in {time.monotonic() - t0:.1f} s")
        gt = np.asarray(projects.open_ground_truth(cfg, vid)[:])
        n = paint_like_a_user(cfg, vid, gt, gt.shape[0] // 2)
        print(f"{n} strokes painted on slice {gt.shape[0] // 2}\n")
        if args.pretrain:
            done = pretraining.pretrain_volume(cfg, vid)
            print(f"pre-trained the demo: {done['steps']} steps in {done['seconds']:.0f} s\n", flush=True)
        print("| budget | base | batch | seed | started from | lr | anchor | zoom | cpu bf16 | self-training | total s "
              "| steps | training s | GT IoU |\n" + "|---" * 14 + "|")
        for (name, length), base, lr, anchor, zoom, bf16, mode, batch, seed in itertools.product(
                lengths, bases, args.lr.split(","), anchors, zooms, precisions, args.self_train.split(","), batches,
                seeds):
            model = {"model": {"base": base}} if base else {}
            run_cfg = cfg.with_(extra={**cfg.extra, **model, "self_train": SELF_TRAIN_MODES[mode]})
            train = {k: v for k, v in (("batch_size", batch), ("seed", seed), ("anchor", anchor), ("zoom", zoom),
                                        ("cpu_bf16", bf16)) if v is not None}
            t0 = time.monotonic()
            m = training.train_model(run_cfg, proj["id"], train_overrides=train, **length,
                                     **({"lr": float(lr)} if lr else {}))["metrics"]
            gt_iou = m.get("gt_iou")
            self_note = self_training.note(m.get("self_training")) or "off"
            print(f"| {name} | {_shown(base)} | {_shown(batch)} | {_shown(seed)} | "
                  f"{m.get('started_from')} | {lr or 'default'} | {_shown(anchor)} | {_shown(zoom)} | {_shown(bf16)} | "
                  f"{self_note} | "
                  f"{time.monotonic() - t0:.1f} | {m['steps']} | {m['seconds']:.1f} | "
                  f"{'n/a' if gt_iou is None else f'{gt_iou:.3f}'} |", flush=True)


if __name__ == "__main__":
    main()
