"""``python -m bench.al``: simulated active learning with an oracle, against random and references.

Protocols (``bench.al_protocol``): without flags the seed's full protocol (for a GPU);
``--quick`` the 2-core CPU protocol (~25-30 min, 3 seeds); ``--tiny`` seconds on a toy volume
(tests). Writes DIR/curves.csv, DIR/details.csv, DIR/summary.json, DIR/curves.png and prints
a markdown table. Example::

    python -m bench.al --raw /data/vnc/stack1/raw --labels /data/vnc/stack1/mitochondria \\
        --out bench_out/al_quick --quick

Another strategy on a finished run's seeds: the same command with ``--strategies NAME --reuse
bench_out/al_quick --out NEW`` trains only that strategy's rounds (``bench.al_reuse``); another way of
scoring candidates (``--score-z W``) reuses the run's initial models and random's rounds the same way, and
another training of each round (``--round-steps N``) its initial models alone.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ml.active import STRATEGIES
from ml.active.strategies import MODEL_FREE
from ml.z_consensus import check_weight

from .al_pretrain import PRETEXTS
from .al_protocol import FULL, PRESETS, Protocol, with_overrides


def _strategies(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if not text:
        return default
    if text == "all":
        return tuple(STRATEGIES)
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown strategies {unknown}; valid: all, {', '.join(STRATEGIES)}")
    return names if "random" in names else ("random",) + names  # gains are measured against random


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.al", description=__doc__.split("\n\n")[0])
    p.add_argument("--raw", required=True, help="image volume (any ml.io format)")
    p.add_argument("--labels", required=True, help="ground-truth mask volume (nonzero = mitochondria)")
    p.add_argument("--out", required=True, help="output folder")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU protocol (~25-30 min on 2 cores, 3 seeds)")
    mode.add_argument("--tiny", action="store_true", help="toy protocol for tests (seconds)")
    p.add_argument("--strategies", help="comma-separated names or 'all' (random is always included)")
    p.add_argument("--seeds", type=int, help="number of seeds")
    p.add_argument("--workers", type=int, help="worker processes (0 = run inline)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dataset", help="HDF5 dataset inside --raw")
    p.add_argument("--labels-dataset", help="HDF5 dataset inside --labels")
    p.add_argument("--pretrain", choices=("none", "heldout", "transductive"),
                   help="self-supervised pre-training before any labels (default: the protocol's, heldout)")
    p.add_argument("--unlabeled", help="an unlabeled volume of the same tissue to pre-train on (VNC stack 2)")
    p.add_argument("--pretext", choices=sorted(PRETEXTS),
                   help="the pre-training's task (default: the protocol's, inpaint: ml.pretrain's own)")
    p.add_argument("--score-context", action="store_true", default=None,
                   help="score candidates with real image around them (as the segmentation sees them)")
    p.add_argument("--self-train", action="store_true", default=None,
                   help="self-training (ml.self_training): pseudo-labels of the pool half in every model's training")
    p.add_argument("--self-train-fg", type=float, help="pseudo-label mitochondria above this probability "
                   "(default: the app's SelfTrainConfig.fg)")
    p.add_argument("--self-z", type=float, help="with --self-train: pseudo-label each window mixed with the slices "
                   "above and below by this weight (ml.z_consensus; default 0: the slice alone)")
    p.add_argument("--score-z", type=float, help="score candidates as the app reads a prediction: each mixed with "
                   "the slices above and below by this weight (0: each slice alone, the default)")
    p.add_argument("--first-seed", type=int, help="first seed (default 0): fresh seeds check a choice made on others")
    p.add_argument("--initial", choices=sorted(MODEL_FREE), help="how the m initial patches are picked: random (the protocol's) or a model-free "
                                     "strategy on the new model's features (kmeans: the app's first suggestions "
                                     "until v39)")
    p.add_argument("--init-anchor", type=float,
                   help="the pull toward the pre-trained body (L2-SP, ml.train's anchor; default 0) of the models that "
                        "start from it: the initial model and full supervision's first schedule")
    p.add_argument("--zoom", type=float, help="crops zoomed by up to 1 + this either way in every training "
                   "(ml.train's zoom augmentation; default 0)")
    p.add_argument("--cpu-bf16", action="store_true", default=None,
                   help="bf16 autocast in every training where the CPU has native bf16 (AMX / AVX-512 BF16)")
    p.add_argument("--pretrain-bf16", action="store_true", default=None,
                   help="the same in the self-supervised pre-training (the app's default; its own weights file)")
    p.add_argument("--reuse", metavar="RUN", help="an earlier --out folder of the same protocol: its initial models, "
                   "strategy runs, RF rows and pre-trained body are taken, not trained again (to add a strategy)")
    p.add_argument("--class-name", help="what the labels mark, for the plot (default: the --labels folder name)")
    p.add_argument("--z-radius", type=int, help="slices either side the model reads as input channels (2.5D, "
                   "ml.slice_context; default 0: each slice alone); the pre-trained body's first layer is widened")
    for name in ("m", "k", "rounds", "pool_size", "init_steps", "round_steps", "eval_slices", "base", "full_seeds",
                 "pretrain_steps"):
        p.add_argument("--" + name.replace("_", "-"), type=int, help=f"override the protocol's {name}")
    return p


def recorded_bf16(asked: bool | None, flag: str = "--cpu-bf16") -> bool | None:
    """What the trainings will do, as the run records it: bf16 only where the CPU has it natively (elsewhere
    ``cpu_bf16`` is a no-op, and a run recorded as bf16 could not reuse or be paired with fp32 rows)."""
    from ml.device import native_cpu_bf16

    if asked and not native_cpu_bf16():
        print(f"{flag}: this CPU has no native bf16 (AMX / AVX-512 BF16); it stays fp32", file=sys.stderr)
        return None
    return asked


def protocol_from_args(args: argparse.Namespace) -> Protocol:
    base = PRESETS["quick"] if args.quick else PRESETS["tiny"] if args.tiny else FULL
    proto = with_overrides(base, seeds=args.seeds, workers=args.workers, m=args.m, k=args.k, rounds=args.rounds,
                           pool_size=args.pool_size, init_steps=args.init_steps, round_steps=args.round_steps,
                           eval_slices=args.eval_slices, base=args.base, full_seeds=args.full_seeds,
                           pretrain=args.pretrain, pretrain_steps=args.pretrain_steps, pretext=args.pretext,
                           score_context=args.score_context, score_z=args.score_z, initial=args.initial,
                           self_train=args.self_train, self_train_fg=args.self_train_fg, self_train_z=args.self_z,
                           first_seed=args.first_seed, init_anchor=args.init_anchor,
                           zoom=args.zoom, z_radius=args.z_radius, cpu_bf16=recorded_bf16(args.cpu_bf16),
                           pretrain_bf16=recorded_bf16(args.pretrain_bf16, "--pretrain-bf16"))
    return with_overrides(proto, strategies=_strategies(args.strategies, proto.strategies))


def check_inputs(raw_path: str, labels_path: str, proto: Protocol, dataset: str | None = None,
                 labels_dataset: str | None = None) -> None:
    """Fail fast in this process (not inside every worker) on unreadable or mismatched inputs."""
    from ml.io.readers import open_labels, open_volume

    from .al_protocol import check_size

    raw = open_volume(raw_path, dataset=dataset)
    truth = open_labels(labels_path, dataset=labels_dataset)
    if tuple(truth.shape) != tuple(raw.shape):
        raise ValueError(f"--labels shape {truth.shape} differs from --raw shape {raw.shape}")
    check_size(raw.shape, proto)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        proto = protocol_from_args(args)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if proto.seeds < 1 or proto.rounds < 1 or proto.z_radius < 0:
        parser.error("need --seeds >= 1, --rounds >= 1 and --z-radius >= 0")
    if args.self_z and not proto.self_train:
        parser.error("--self-z needs --self-train: it says how self-training reads the model's prediction")
    try:
        proto.check_init_recipe()
        proto.self_train_config()
        check_weight(proto.score_z)
        check_inputs(args.raw, args.labels, proto, args.dataset, args.labels_dataset)
    except (ValueError, OSError) as exc:
        parser.exit(2, f"error: {' '.join(str(exc).split())}\n")
    from . import al_pretrain, al_reuse
    from .al_protocol import load_data
    from .al_report import markdown, write_outputs
    from .al_run import run_tasks

    out = Path(args.out)
    (out / "work").mkdir(parents=True, exist_ok=True)
    try:
        reused = al_reuse.load(Path(args.reuse), proto, out / "work") if args.reuse else None
    except (ValueError, OSError) as exc:
        parser.exit(2, f"error: {' '.join(str(exc).split())}\n")
    print(f"protocol {proto.name}: budgets {proto.budgets}, strategies {', '.join(proto.strategies)}, "
          f"{proto.seeds} seeds, {proto.workers} workers, pre-training {proto.pretrain}", flush=True)
    data = load_data(args.raw, args.labels, proto, args.dataset, args.labels_dataset)
    weights, pre = al_pretrain.prepare(data, proto, out / "work", args.unlabeled, args.device,
                                       threads=max(1, proto.workers), log=lambda s: print(s, flush=True))
    del data
    start = time.monotonic()
    results = run_tasks(args.raw, args.labels, out, proto, args.dataset, args.labels_dataset, args.device,
                        log=lambda s: print(s, flush=True), pretrained=weights, reused=reused)
    results["wall_s"] = time.monotonic() - start
    results["pretrain"] = pre
    results["class_name"] = args.class_name or Path(args.labels).name
    results["reused_from"] = reused.run if reused else None
    if proto.self_train:                      # its thresholds, as the run used them
        from dataclasses import asdict

        results["self_train"] = asdict(proto.self_train_config())
    summary = write_outputs(out, results, proto)
    print(markdown(summary))
    print(f"targets: {summary['targets']}")
    if "z_consensus" in summary:
        print(f"with the z consensus (w = {proto.z_consensus:g}), as the app reads a prediction:")
        print(markdown({**summary, **summary["z_consensus"]}))
        print(f"targets: {summary['z_consensus']['targets']}")
    print(f"wrote {out}/curves.csv, summary.json, curves.png in {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
