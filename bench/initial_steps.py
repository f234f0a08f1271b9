"""``python -m bench.initial_steps``: does a first model want more supervised steps?

The quick protocol's initial model, trained exactly as ``bench.al`` trains it (its patches,
pre-trained body, EMA, self-training), for each ``--steps`` value and seed, on the dev split
(``Protocol.dev``: the pool half alone, rows 384..512 of every slice scored, or 256..512 with
``--dev-train-share 0.5``), so the test half stays unread; ``--split test`` then checks a choice on
the protocol's own test half (4 slices, as ``bench.al --quick`` scores). Prints a markdown table: IoU
per seed, mean and sd, seconds per model, and what each seed's draw of patches holds (is a weak seed
a poor draw?); writes them to ``--out``/summary.json. ``--train-seed`` trains the same draws again,
``--lr`` / ``--batch`` / ``--ema`` / ``--head-steps`` (a linear probe first) / ``--anchor`` (a pull
toward the pre-trained body) / ``--self-rounds`` (the pool pseudo-labeled again mid-way) with another
recipe (``bench.ensemble`` then splits the spread into training and draw); ``--initial kmeans`` picks the
patches as k-means representatives on the body's features (the app's first suggestions until v39); ``--m``
gives the model more random patches, to check a first model's recipe where the app trains its later models
(every model of the app starts from the pre-trained body).
Example (the pre-trained body of a finished ``bench.al`` run is reused)::

    python -m bench.initial_steps --raw R --labels L --base 16 --self-train --steps 1000,2000 \\
        --weights bench_out/v13_b16_self/work/pretrained_heldout_plus-unlabeled_b16d4_1500.pt
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

from ml.active.strategies import MODEL_FREE, NO_MODEL_FALLBACK

from . import al_pretrain, al_tasks
from .al_pretrain import PRETEXTS
from .al import check_inputs, recorded_bf16
from .al_protocol import PRESETS, Protocol
from .saved_runs import steps_dir


def _initial(steps: int, seed: int, workdir: str) -> dict:
    """One initial model of ``seed`` trained for ``steps`` (+ the protocol's self-training steps)."""
    al_tasks._STATE.update(proto=replace(al_tasks._STATE["proto"], init_steps=steps), workdir=Path(workdir))
    Path(workdir).mkdir(parents=True, exist_ok=True)
    return {"steps": steps, **al_tasks.initial_task(seed)}


def heldout_body(raw: str, labels: str, proto: Protocol, out: Path, unlabeled: str) -> str:
    """The body ``bench.al`` pre-trains (``heldout``: the unlabeled volume and the protocol's pool half),
    with ``proto.pretext``; on the dev split too, so a pretext is compared on the body the protocol uses."""
    from .al_protocol import load_data

    whole = replace(proto, dev=False)
    weights, pre = al_pretrain.prepare(load_data(raw, labels, whole), whole, out / "work", unlabeled,
                                       log=lambda s: print(s, flush=True))
    (out / "work" / "pretrain.json").write_text(json.dumps(pre, indent=1))
    return weights


def run(raw: str, labels: str, proto: Protocol, steps: list[int], out: Path, weights: str | None,
        workers: int) -> list[dict]:
    """Every (steps, seed) model, longest first over ``workers`` one-thread processes."""
    jobs = sorted(((n, s) for n in steps for s in proto.seed_range), key=lambda j: -j[0])
    init = (raw, labels, proto, str(out), None, None, "cpu", weights, 1)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=al_tasks.init_worker,
                             initargs=init) as pool:
        futures = [pool.submit(_initial, n, s, str(steps_dir(out, n))) for n, s in jobs]
        for f in as_completed(futures):   # each model as it ends: a long run shows its progress
            r = f.result()
            print(f"{r['steps']} steps, seed {r['seed']}: IoU {r['iou']:.3f} ({r['seconds']:.0f} s)", flush=True)
        return [f.result() for f in futures]


def table(results: list[dict], proto: Protocol) -> str:
    lines = [f"| initial steps (+{proto.self_train_steps if proto.self_train else 0} self-training) | "
             f"{'dev' if proto.dev else 'test-half'} IoU per "
             f"seed {proto.first_seed}..{proto.seed_range[-1]} | mean | sd | s per model |", "|---|---|---|---|---|"]
    for n in sorted({r["steps"] for r in results}):
        rows = sorted((r for r in results if r["steps"] == n), key=lambda r: r["seed"])
        iou = [r["iou"] for r in rows]
        lines.append(f"| {n} | {' '.join(f'{x:.3f}' for x in iou)} | {np.mean(iou):.3f} | {np.std(iou):.3f} | "
                     f"{np.mean([r['seconds'] for r in rows]):.0f} |")
    first = sorted({r["seed"]: r for r in results}.values(), key=lambda r: r["seed"])   # a seed's draw: any step count
    draws = " ".join(f"{r['fg_share']:.2f}/{r['fg_pixels']:.3f}" for r in first)
    lines.append(f"| the draw: share of patches with mitochondria / of pixels | {draws} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.initial_steps", description=__doc__.split("\n\n")[0])
    p.add_argument("--raw", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--out", default="bench_out/initial_steps")
    p.add_argument("--weights", help="pre-trained body (ml.pretrain) of the same base and depth; none: --unlabeled's "
                   "body, or from scratch")
    p.add_argument("--unlabeled", help="with no --weights: pre-train the body as bench.al does (this unlabeled volume "
                   "plus the protocol's pool half), cached in --out/work")
    p.add_argument("--pretext", choices=sorted(PRETEXTS),
                   help="with --unlabeled: that pre-training's task (default: the protocol's, inpaint)")
    p.add_argument("--pretrain-seed", type=int, default=0,
                   help="with --unlabeled: that pre-training's seed (another seed: another run of the same recipe)")
    p.add_argument("--steps", default="1000,2000", help="comma-separated initial-model step counts to compare")
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--self-train", action="store_true")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--split", choices=("dev", "test"), default="dev",
                   help="dev: the pool half re-split (choose here); test: the protocol's test half (check a choice)")
    p.add_argument("--dev-train-share", type=float, default=0.75,
                   help="dev split: the share of the pool half's rows trained on, the rest scored (0.5: halves)")
    p.add_argument("--train-seed", type=int, default=0,
                   help="train each draw again with training seed = its seed + this (an ensemble's second member)")
    p.add_argument("--lr", type=float, help=f"the first model's learning rate (default: the protocol's, {Protocol.lr:g})")
    p.add_argument("--batch", type=int, help=f"crops per step (default: the protocol's, {Protocol.batch})")
    p.add_argument("--head-steps", type=int, default=0,
                   help="train the new head alone for this many steps before the whole network (LP-FT)")
    p.add_argument("--anchor", type=float, default=0.0,
                   help="pull toward the pre-trained body: each step moves the body lr * this back (L2-SP)")
    p.add_argument("--ema", type=float, help=f"weight-average decay (default: the protocol's, {Protocol.ema:g})")
    p.add_argument("--m", type=int, help=f"random patches the model learns from (default: the protocol's, "
                   f"{PRESETS['quick'].m}): a recipe for the first model checked where the app trains later models")
    p.add_argument("--zoom", type=float, help="crops zoomed by up to 1 + this either way (default: the protocol's, "
                   f"{Protocol.zoom:g})")
    p.add_argument("--balance", type=float, help="crop centres per class: 1 each class equally often, 0 as often "
                   f"as its labeled pixels (default: the protocol's, {Protocol.balance:g})")
    p.add_argument("--self-rounds", type=int, default=1,
                   help="with --self-train: its steps in this many rounds, the pool pseudo-labeled again before each")
    p.add_argument("--bg-share", type=float, default=1.0,
                   help="with --self-train: background pseudo-labels on only this share of the pixels predicted "
                   "background, the surest (1: every one above SelfTrainConfig.bg)")
    p.add_argument("--self-z", type=float, default=0.0,
                   help="with --self-train: pseudo-label each window mixed with the slices above and below by this "
                   "weight (ml.z_consensus; 0: the slice alone)")
    p.add_argument("--cpu-bf16", action="store_true", help="train in bf16 where the CPU has it (TrainConfig.cpu_bf16)")
    p.add_argument("--pretrain-bf16", action="store_true",
                   help="with --unlabeled: pre-train in bf16 where the CPU has it (PretrainConfig.cpu_bf16)")
    p.add_argument("--z-radius", type=int, default=0, help="slices either side the model reads as input channels "
                   "(2.5D, ml.slice_context; the body's first layer is widened; default 0)")
    p.add_argument("--initial", choices=sorted(MODEL_FREE), default="random",
                   help=f"how the m patches are picked: random (the protocol's draw; the app's first suggestions are "
                   f"{NO_MODEL_FALLBACK}) or a model-free strategy on the new model's features")
    p.add_argument("--tiny", action="store_true", help="the toy protocol (tests)")
    args = p.parse_args(argv)
    proto = replace(PRESETS["tiny" if args.tiny else "quick"], base=args.base, self_train=args.self_train,
                    seeds=args.seeds, first_seed=args.first_seed, init_train_seed=args.train_seed,
                    initial=args.initial)
    proto = replace(proto, init_head_steps=args.head_steps, init_anchor=args.anchor,
                    self_train_rounds=args.self_rounds, self_train_bg_share=args.bg_share,
                    self_train_z=args.self_z, z_radius=args.z_radius, pretext=args.pretext or Protocol.pretext,
                    pretrain_seed=args.pretrain_seed, cpu_bf16=bool(recorded_bf16(args.cpu_bf16)),
                    pretrain_bf16=bool(recorded_bf16(args.pretrain_bf16, "--pretrain-bf16")),
                    **{k: v for k, v in (("lr", args.lr), ("batch", args.batch), ("ema", args.ema), ("m", args.m),
                                         ("zoom", args.zoom), ("balance", args.balance)) if v is not None})
    if args.split == "dev":
        proto = replace(proto, dev=True, eval_slices=0, dev_train_share=args.dev_train_share)
    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        p.error(f"--steps wants comma-separated whole numbers, got {args.steps!r}")
    if not steps or min(steps) < 1 or args.seeds < 1 or not 1 <= proto.m <= proto.pool_size:
        p.error(f"need at least one --steps value >= 1, --seeds >= 1 and 1 <= --m <= {proto.pool_size} (the candidates)")
    if args.z_radius < 0:
        p.error(f"--z-radius must be >= 0, got {args.z_radius}")
    if args.weights and not Path(args.weights).is_file():
        p.error(f"--weights {args.weights} is not a file")
    if args.weights and args.unlabeled:
        p.error("give --weights (a body) or --unlabeled (pre-train one), not both")
    if args.pretext and not args.unlabeled:
        p.error("--pretext needs --unlabeled: it says how to pre-train the body, which --weights gives ready-made")
    if args.pretrain_seed and not args.unlabeled:
        p.error("--pretrain-seed needs --unlabeled: it seeds the pre-training that --weights gives ready-made")
    if args.pretrain_bf16 and not args.unlabeled:
        p.error("--pretrain-bf16 needs --unlabeled: it says how to pre-train the body that --weights gives ready-made")
    if args.pretrain_seed < 0:
        p.error(f"--pretrain-seed must be >= 0, got {args.pretrain_seed}")
    if args.self_rounds != 1 and not args.self_train:
        p.error("--self-rounds needs --self-train: it splits the self-training steps")
    if args.bg_share != 1.0 and not args.self_train:
        p.error("--bg-share needs --self-train: it says which pixels self-training labels background")
    if args.self_z and not args.self_train:
        p.error("--self-z needs --self-train: it says how self-training reads the model's prediction")
    try:
        proto.check_init_recipe()
        proto.self_train_config()
        check_inputs(args.raw, args.labels, proto)
    except (ValueError, OSError) as exc:
        p.exit(2, f"error: {' '.join(str(exc).split())}\n")
    weights = args.weights or (heldout_body(args.raw, args.labels, proto, Path(args.out), args.unlabeled)
                               if args.unlabeled else None)
    results = run(args.raw, args.labels, proto, steps, Path(args.out), weights, args.workers)
    print(table(results, proto))
    summary = {"split": args.split, "dev_train_share": proto.dev_train_share if proto.dev else None,
               "base": proto.base, "m": proto.m, "initial": proto.initial, "self_train": proto.self_train,
               "self_train_rounds": proto.self_train_rounds, "self_train_bg_share": proto.self_train_bg_share,
               "self_train_z": proto.self_train_z, "z_radius": proto.z_radius, "weights": weights,
               "pretext": proto.pretext if weights and not args.weights else None,
               "pretrain_seed": proto.pretrain_seed if weights and not args.weights else None,
               "pretrain_bf16": proto.pretrain_bf16 if weights and not args.weights else None,
               "train_seed": proto.init_train_seed, **proto.init_recipe(),
               "models": sorted(results, key=lambda r: (r["steps"], r["seed"]))}
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {Path(args.out) / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
