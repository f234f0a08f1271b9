"""``python -m ml train``: training data from a dense label volume or a LabelStore, then fine-tune.

Dense volumes are read slice by slice and cut into tiles; at most ``MAX_TRAIN_PIXELS`` stay
in memory (a seeded random subset of labeled tiles beyond that), so a huge fully labeled
volume trains without exhausting RAM.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from ml.io.normalize import normalize
from ml.cli_checks import InputError
from ml.cli_run import EXIT_INTERRUPTED, Interrupt, Progress, device_from_arg, intensity_window
from ml.cli_checks import check_output_file, warn

#: Dense label volumes are cut into tiles of this size; at most MAX_TRAIN_PIXELS are kept in memory.
TRAIN_TILE = 1024
MAX_TRAIN_PIXELS = 1 << 26


def _label_source(args, shape: tuple[int, int, int]) -> tuple[Any, str]:
    """(label array-like, mode): a LabelStore directory, or a dense label volume."""
    path = Path(args.labels)
    if path.is_dir() and (path / "meta.json").is_file():
        from ml.labels import LabelStore

        store = LabelStore.open(path, durable=False)
        if tuple(store.shape) != tuple(shape):
            raise InputError(f"label store {path} has shape {tuple(store.shape)} but --raw has shape {shape}")
        return store, "store"
    from ml.io.readers import open_labels

    labels = open_labels(str(path), dataset=args.labels_dataset)
    if tuple(labels.shape) != tuple(shape):
        raise InputError(f"--labels has shape {tuple(labels.shape)} but --raw has shape {shape}; they must match")
    return labels, args.label_values


def _map_labels(lab: np.ndarray, mode: str) -> np.ndarray:
    """mask: 0 -> background (1), nonzero -> mitochondria (2); classes: values kept (0 = unlabeled)."""
    if mode == "mask":
        return (lab != 0).astype(np.uint8) + 1
    if lab.min() < 0 or lab.max() > 255:
        raise InputError(f"--label-values classes needs labels in 0..255, got {lab.min()}..{lab.max()}")
    return lab.astype(np.uint8)


def _dense_regions(volume, labels, mode: str, lo: float, hi: float, seed: int) -> list:
    """Tiles of the labeled slices (at most MAX_TRAIN_PIXELS, a seeded random subset beyond)."""
    from ml.dataset import Region

    zdim, h, w = volume.shape
    grid = [(y0, x0) for y0 in range(0, h, TRAIN_TILE) for x0 in range(0, w, TRAIN_TILE)]
    boxes = []
    for z in range(zdim):
        if mode == "mask":  # every pixel is labeled: no need to read
            boxes += [(z, y0, x0) for y0, x0 in grid]
            continue
        lab = _map_labels(np.asarray(labels[z]), mode)
        boxes += [(z, y0, x0) for y0, x0 in grid if lab[y0:y0 + TRAIN_TILE, x0:x0 + TRAIN_TILE].any()]
    if not boxes:
        raise InputError("--labels holds no labeled pixels (with --label-values classes, 0 means unlabeled)")
    budget = max(1, MAX_TRAIN_PIXELS // (TRAIN_TILE * TRAIN_TILE))
    if len(boxes) > budget:
        keep = np.sort(np.random.default_rng(seed).choice(len(boxes), budget, replace=False))
        print(f"note: training on {budget} of {len(boxes)} labeled {TRAIN_TILE}px tiles (memory cap)", file=sys.stderr)
        boxes = [boxes[i] for i in keep]
    regions = []
    for z in sorted({b[0] for b in boxes}):
        lab = _map_labels(np.asarray(labels[z]), mode)
        img = normalize(volume[z], lo, hi)
        for _, y0, x0 in (b for b in boxes if b[0] == z):
            win = np.s_[y0:y0 + TRAIN_TILE, x0:x0 + TRAIN_TILE]
            regions.append(Region(img[(Ellipsis,) + win], lab[win], z, y0, x0))
    return regions


def _check_out(out: Path) -> None:
    """A writable file name that is new or an earlier checkpoint, never the user's other data."""
    from ml.checkpoint import CheckpointError, read_info

    check_output_file(out, "--out")
    if out.exists():
        try:
            read_info(out)
        except CheckpointError:
            raise InputError(f"--out {out} exists and is not an ActiveSeg checkpoint; choose a new path") from None


def _check_labels(regions: list, mode: str, parent_info: dict | None, where: str) -> None:
    """Refuse labels no model can learn from now, not after the training."""
    values = _label_values(regions) if regions else []
    if not values:
        raise InputError(f"no labeled pixels in {where}")
    if mode == "classes":
        _check_class_values(values, parent_info)
    _check_two_classes(values, mode, parent_info)


def _label_values(regions: list) -> list[int]:
    """The label values the training regions hold, 0 (unlabeled) left out."""
    values = np.unique(np.concatenate([np.unique(r.labels) for r in regions]))
    return [int(v) for v in values if v != 0]


def _check_class_values(values: list[int], parent_info: dict | None) -> None:
    """--label-values classes: every class up to the largest value must be labeled somewhere, else
    a 0/255 mask read as classes silently trains a 255-class model."""
    if parent_info is not None and len(parent_info["classes"]) >= values[-1]:
        return  # the parent model defines these classes
    missing = sorted(set(range(2, values[-1])) - set(values))
    if missing:
        bad = [v for v in values if v > missing[0]]
        skipped = ", ".join(map(str, missing)) if len(missing) <= 4 else f"{missing[0]}, ..., {missing[-1]}"
        raise InputError(f"--label-values classes: label value(s) {', '.join(map(str, bad))} skip class value(s) "
                         f"{skipped}; number classes 1 = background, 2, 3, ... without gaps "
                         "(for a 0/255 mask use --label-values mask)")


def _check_two_classes(values: list[int], mode: str, parent_info: dict | None) -> None:
    """A new model cannot learn from one class; fine-tuning on one class is allowed, with a warning."""
    if len(values) >= 2:
        return
    what = {"mask": {1: "background only: every label pixel is 0", 2: "mitochondria only: no label pixel is 0"}}
    one = what.get(mode, {}).get(values[0], f"the value {values[0]} only")
    if parent_info is None:
        raise InputError(f"the labels hold one class ({one}); a model needs at least two classes to learn from")
    warn(f"the labels hold one class ({one}); fine-tuning on it pulls the model towards that class")


def _classes_for(mode: str, source: Any, regions: list, parent_info: dict | None) -> list:
    from ml.labels import DEFAULT_CLASSES

    if mode == "store":
        return list(source.classes)
    if mode == "mask":
        return [dict(c) for c in DEFAULT_CLASSES]
    n = max(2, max(int(r.labels.max()) for r in regions))
    if parent_info is not None and len(parent_info["classes"]) >= n:
        return list(parent_info["classes"])
    return ["background"] + [f"class_{i}" for i in range(1, n)]


def _start_model(args, parent, n_classes: int) -> tuple[Any, str]:
    """``(model, what it started from)``: the --from checkpoint, --pretrained weights, or scratch.

    A pre-trained body fixes the architecture (its base, depth and norm), so --base is ignored then;
    --z-radius widens its first layer to read neighbour slices.
    """
    from ml.model import UNet2D
    from ml.pretrain import init_from_pretrained, read_info
    from ml.slice_context import channels_for

    if parent is not None:
        if args.pretrained:
            raise InputError("--pretrained starts a new model; it cannot be combined with --from")
        return parent, str(args.from_)
    channels = channels_for(args.z_radius)
    if not args.pretrained:
        return UNet2D(in_channels=channels, n_classes=n_classes, base=args.base), "scratch"
    arch = {k: v for k, v in read_info(args.pretrained)["config"].items() if k != "n_classes"}
    model = UNet2D(**{**arch, "n_classes": n_classes, "in_channels": channels})
    info = init_from_pretrained(model, args.pretrained)
    return model, f"pretrained {args.pretrained} ({info['steps_done']} steps)"


def run_train(args) -> int:
    """Train or fine-tune from ``args`` (see ml.cli.build_parser); saves the checkpoint, returns the exit code."""
    from ml.anchor import start_anchor
    from ml.checkpoint import DEFAULT_NORMALIZATION, load_checkpoint, save_checkpoint
    from ml.dataset import regions_from_store, split_regions
    from ml.io.readers import check_segmentable, open_volume
    from ml.progress import Cancelled
    from ml.quality import dense_share
    from ml.self_training import SelfTrainConfig, pseudo_regions, train_in_phases, window_boxes
    from ml.slice_context import with_radius, z_radius
    from ml.train import TrainConfig, config_dict

    _check_out(Path(args.out))
    device = device_from_arg(args.device)
    if args.pretrained and not args.from_:
        from ml.pretrain import read_info

        read_info(args.pretrained)  # a wrong file fails now, not after reading the labels
    volume = check_segmentable(open_volume(args.raw, dataset=args.dataset))
    source, mode = _label_source(args, volume.shape)
    norm = dict(DEFAULT_NORMALIZATION)
    parent, parent_info = None, None
    if args.from_:
        parent, parent_info = load_checkpoint(args.from_, device)
        norm = dict(parent_info.get("normalization") or norm)
    lo, hi = intensity_window(volume, norm)
    print(f"reading labels ({mode}) from {args.labels} ...", file=sys.stderr, flush=True)
    radius = z_radius(parent) if parent is not None else args.z_radius      # how the model will read a slice
    seen = with_radius(volume, radius)
    regions = (regions_from_store(seen, source, lo, hi) if mode == "store"
               else _dense_regions(seen, source, mode, lo, hi, args.seed))
    _check_labels(regions, mode, parent_info, args.labels)
    classes = _classes_for(mode, source, regions, parent_info)
    model, started_from = _start_model(args, parent, len(classes))
    if int(model.config["n_classes"]) != len(classes):
        raise InputError(f"--from model has {model.config['n_classes']} classes but the labels have {len(classes)}")
    n_labeled = sum(r.n_labeled for r in regions)
    steps = args.epochs * args.steps_per_epoch
    self_cfg = SelfTrainConfig(enabled=not args.no_self_train and mode != "mask")   # a mask labels every pixel
    self_steps = self_cfg.self_steps(steps, warm=parent is not None,
                                     dense_share=dense_share(r.labels for r in regions))
    config = TrainConfig(steps=steps, crop=args.crop, batch_size=args.batch, eval_every=args.steps_per_epoch,
                         seed=args.seed, anchor=start_anchor(bool(args.pretrained), self_steps > 0),
                         **({} if args.lr is None else {"lr": args.lr}))
    print(f"training on {len(regions)} regions, {n_labeled:,} labeled pixels, {steps} steps on {device}",
          file=sys.stderr, flush=True)
    progress = Progress("train", "steps", mark=args.steps_per_epoch)
    train_regions, val_regions = split_regions(regions, config.val_fraction, config.seed)
    if self_steps:
        print(f"self-training: the last {self_steps} steps also learn confident pseudo-labels of the volume "
              f"(--no-self-train to skip)", file=sys.stderr, flush=True)
    elif self_cfg.enabled:
        print(f"no self-training: it needs {self_cfg.min_steps} steps on the labels first (a new model) and "
              f"{self_cfg.min_dense:.0%} of them in completely labeled patches, not strokes",
              file=sys.stderr, flush=True)

    def pseudo(m) -> list:
        boxes = window_boxes(volume.shape, self_cfg, args.seed)
        return pseudo_regions(m, volume, lo, hi, boxes, self_cfg, held_out=val_regions, known=train_regions,
                              device=device, cancel=stop)

    meta = {"parent": str(args.from_) if args.from_ else None, "started_from": started_from, "labels_used": n_labeled, "raw": str(args.raw),
            "labels": str(args.labels), "train_config": config_dict(config, device), "self_train_steps": self_steps,
            "source": "cli"}
    status = 0
    with Interrupt() as stop:
        try:
            result = train_in_phases(model, train_regions, val_regions, config, self_cfg, self_steps, pseudo,
                                     progress, stop, device)
        except Cancelled as exc:
            result, status = getattr(exc, "result", None), EXIT_INTERRUPTED
            meta["interrupted"] = True
    if result is None:                  # stopped while pseudo-labeling, before a warm start's first step
        print(f"interrupted before any training step; {args.out} not written", file=sys.stderr)
        return status
    meta.update(best_val_iou=result.best_val_iou, best_step=result.best_step)
    save_checkpoint(args.out, result.model, classes, result.history, meta, norm)
    best = "n/a" if result.best_val_iou is None else f"{result.best_val_iou:.4f}"
    print(f"{'interrupted; ' if status else ''}saved {args.out} (best validation IoU {best} at step {result.best_step})")
    return status
