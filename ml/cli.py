"""Command line for volumes too big for the browser: ``python -m ml pretrain | train | predict | stats``.

The same ``ml`` functions the app uses, driven from a terminal: progress goes to stderr as
a few readable lines (throttled, never a flood), results to stdout. Bad input ends with a
one-line ``error: ...`` on stderr and exit code 2, never a traceback (``--traceback``
shows one for bug reports). Ctrl-C stops cleanly: training saves the best weights so far.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from ml.cli_checks import (InputError, OneLineParser, check_output_file, check_suffix, check_writable_parent,
                           join_negative_values, non_negative, positive, probability, voxel_size, z_weight)
from ml.cli_run import EXIT_BAD_INPUT, EXIT_INTERRUPTED, Interrupt, Progress, device_from_arg, intensity_window
from ml.io.errors import SUPPORTED_FORMATS
from ml.z_consensus import WEIGHT

#: How --labels values are read: see ml.cli_train.
LABEL_MODES = ("mask", "classes")
#: What ``stats --instances`` can write (ml.io.export).
INSTANCE_SUFFIXES = (".tif", ".tiff", ".zarr")


def cmd_train(args) -> int:
    from ml.cli_train import run_train

    return run_train(args)


def cmd_pretrain(args) -> int:
    from ml.cli_pretrain import run_pretrain

    return run_pretrain(args)


# ----------------------------------------------------------------------------- predict
def _check_output_dir(out: Path) -> None:
    """Only ever overwrite a previous prediction, never an unrelated folder or file."""
    if not out.exists():
        check_writable_parent(out, "--out")
        return
    from ml.infer import PredictionError, open_prediction

    try:
        open_prediction(out, allow_incomplete=True)
    except PredictionError:
        raise InputError(f"--out {out} exists and is not a prediction store; choose a new path") from None
    print(f"note: overwriting the previous prediction at {out}", file=sys.stderr)


def cmd_predict(args) -> int:
    from ml.checkpoint import load_checkpoint
    from ml.infer import predict_volume
    from ml.io.readers import check_segmentable, open_volume
    from ml.progress import Cancelled

    out = Path(args.out)
    _check_output_dir(out)
    device = device_from_arg(args.device)
    model, info = load_checkpoint(args.model, device)
    volume = check_segmentable(open_volume(args.raw, dataset=args.dataset))
    lo, hi = intensity_window(volume, dict(info.get("normalization") or {}))
    names = [c["name"] if isinstance(c, dict) else str(c) for c in info["classes"]]
    z, h, w = volume.shape
    print(f"predicting {volume.name} {z}x{h}x{w} on {device} (tile {args.tile}, batch {args.batch}, "
          f"MC passes {args.mc_passes})", file=sys.stderr, flush=True)
    start = time.monotonic()
    with Interrupt() as stop:
        try:
            predict_volume(model, volume, out, lo, hi, tile=args.tile, context=args.context, batch_size=args.batch,
                           mc_passes=args.mc_passes, device=device, progress=Progress("predict", "slices"),
                           cancel=stop, classes=names, z_consensus=args.z_consensus)
        except Cancelled:
            print(f"interrupted: {out} is incomplete (rerun to finish)", file=sys.stderr)
            return EXIT_INTERRUPTED
    secs = time.monotonic() - start
    extra = " + entropy, bald" if args.mc_passes > 0 else ""
    print(f"wrote {out}: prob {len(names)}x{z}x{h}x{w} float16{extra} in {secs:.1f} s "
          f"({z * h * w / 1e6 / max(secs, 1e-9):.2f} Mvoxel/s)")
    return 0


# ----------------------------------------------------------------------------- stats
def _check_stats_outputs(args) -> None:
    """Both outputs writable and of a known kind, before the segmentation (and before the CSV)."""
    check_output_file(Path(args.out), "--out")
    if not args.instances:
        return
    inst = Path(args.instances)
    check_suffix(inst, "--instances", INSTANCE_SUFFIXES)
    if inst.suffix.lower() == ".zarr":
        from ml.io.export import is_ome_zarr

        if inst.exists() and not (inst.is_dir() and is_ome_zarr(inst)):
            raise InputError(f"--instances {inst} exists and is not an earlier OME-Zarr export; choose a new path")
        check_writable_parent(inst, "--instances")
    else:
        check_output_file(inst, "--instances")
    if inst.resolve() == Path(args.out).resolve():
        raise InputError("--instances and --out are the same path")


def cmd_stats(args) -> int:
    from ml.files import atomic_write
    from ml.infer import foreground_probability, open_prediction
    from ml.objects import object_table, summary
    from ml.postprocess import PostprocessSettings, segment

    _check_stats_outputs(args)
    group = open_prediction(args.pred)
    stored = group.attrs.get("voxel_size")
    vs = args.voxel_size or (tuple(stored) if stored else None)
    rule = PostprocessSettings.parse({"threshold": args.threshold, "min_size": args.min_size, "split": args.split,
                                      "core_threshold": args.core_threshold, "min_size_unit": args.min_size_unit}, vs)
    _, zdim, h, w = group["prob"].shape
    fg = np.empty((zdim, h, w), np.float16)
    for z in range(zdim):
        fg[z] = foreground_probability(group, z)
    print(f"segmenting {zdim}x{h}x{w} ({rule.describe(vs)}) ...", file=sys.stderr, flush=True)
    inst = segment(fg, voxel_size=vs, **rule.as_params())
    del fg
    table = object_table(inst, vs)
    atomic_write(Path(args.out), lambda tmp: table.to_csv(tmp, index=False))
    if args.instances:
        _write_instances(Path(args.instances), inst, vs)
    s = summary(table)
    vol_unit, area_unit = ("nm^3", "nm^2") if vs else ("voxels", "voxel faces (no --voxel-size)")
    print(f"objects: {s['count']} ({s['edge_count']} cut by the volume's edge: column 'edge')")
    print(f"total volume: {s['total_volume_nm3']:.6g} {vol_unit} (mean {s['mean_volume_nm3']:.6g} {vol_unit})")
    print(f"total surface: {s['total_surface_nm2']:.6g} {area_unit}")
    print(f"wrote {args.out}" + (f" and {args.instances}" if args.instances else ""))
    return 0


def _write_instances(path: Path, inst: np.ndarray, vs) -> None:
    """The instance labels as TIFF or OME-Zarr (the suffix was checked by _check_stats_outputs)."""
    from ml.io.export import write_ome_zarr, write_tiff

    if path.suffix.lower() == ".zarr":
        write_ome_zarr(path, inst, vs, "instances")
    else:
        write_tiff(path, inst, vs)


# ----------------------------------------------------------------------------- parser
def build_parser() -> OneLineParser:
    formats = f"Accepted volume formats: {SUPPORTED_FORMATS}."
    p = OneLineParser(prog="python -m ml", description="ActiveSeg: train, predict and measure from a terminal.",
                      epilog=formats)
    p.add_argument("--traceback", action="store_true", help="show the full traceback on errors (for bug reports)")
    sub = p.add_subparsers(dest="command", metavar="{pretrain,train,predict,stats}")
    pt = sub.add_parser("pretrain", help="self-supervised pre-training on an unlabeled volume", epilog=formats)
    pt.add_argument("--raw", required=True, help="image volume: TIFF, folder of slices, Zarr, HDF5, MRC")
    pt.add_argument("--out", required=True, help="weights to write (e.g. encoder.pt); rerun to resume")
    pt.add_argument("--steps", type=positive(int), default=1500)
    pt.add_argument("--minutes", type=positive(float), help="stop after this many minutes (saved as finished)")
    pt.add_argument("--crop", type=positive(int), default=128)
    pt.add_argument("--base", type=positive(int), default=16, help="U-Net width (must match the models trained from it)")
    pt.add_argument("--depth", type=positive(int), default=4)
    pt.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train", help="train (or fine-tune) a U-Net on labels", epilog=formats)
    t.add_argument("--raw", required=True, help="image volume: TIFF, folder of slices, Zarr, HDF5, MRC")
    t.add_argument("--labels", required=True, help="dense label volume (same formats) or a LabelStore folder")
    t.add_argument("--label-values", choices=LABEL_MODES, default="mask",
                   help="mask: 0 = background, nonzero = mitochondria (default); classes: 0 = unlabeled, "
                        "1 = background, 2.. = classes (sparse)")
    t.add_argument("--out", required=True, help="checkpoint to write (e.g. model.pt)")
    t.add_argument("--from", dest="from_", help="checkpoint to fine-tune from (warm start)")
    t.add_argument("--pretrained", help="start a new model from `python -m ml pretrain` weights")
    t.add_argument("--epochs", type=positive(int), default=10)
    t.add_argument("--steps-per-epoch", type=positive(int), default=100, help="steps between validations")
    t.add_argument("--lr", type=positive(float), help="learning rate (default: ml.train.TrainConfig's)")
    t.add_argument("--crop", type=positive(int), default=128, help="training crop size (px)")
    t.add_argument("--batch", type=positive(int), default=8)
    t.add_argument("--base", type=positive(int), default=16, help="U-Net width (ignored with --from)")
    t.add_argument("--z-radius", type=int, default=0, choices=range(0, 4), metavar="{0..3}",
                   help="a new model reads this many slices either side as input channels (2.5D; default 0: each "
                        "slice alone; ignored with --from); a --pretrained body's first layer is widened")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-self-train", action="store_true",
                   help="train on the labels alone (sparse labels otherwise also learn confident pseudo-labels "
                        "of the volume in the last third of the steps; a --from warm start in every step)")
    t.add_argument("--labels-dataset", help="HDF5 dataset path inside --labels")
    pr = sub.add_parser("predict", help="probability (and uncertainty) maps for a whole volume, as Zarr",
                        epilog=formats)
    pr.add_argument("--model", required=True)
    pr.add_argument("--raw", required=True)
    pr.add_argument("--out", required=True, help="output Zarr folder (e.g. pred.zarr)")
    pr.add_argument("--mc-passes", type=non_negative(int), default=0,
                    help="MC-dropout passes for entropy/BALD maps (0 = off)")
    pr.add_argument("--tile", type=positive(int), default=512, help="output tile (px)")
    pr.add_argument("--context", type=non_negative(int), help="px of image around each tile (default: the model's "
                                                                "receptive radius, so tiling changes nothing)")
    pr.add_argument("--batch", type=positive(int), default=8, help="tiles per forward pass")
    pr.add_argument("--z-consensus", type=z_weight, default=WEIGHT,
                    help="each neighbour slice's weight when the prediction is read (`stats`, the app): "
                         f"[w, 1 - 2w, w] along z; 0 = each slice alone (default {WEIGHT})")
    st = sub.add_parser("stats", help="objects (3D connected components) and their sizes from a prediction")
    st.add_argument("--pred", required=True, help="prediction Zarr written by `predict`")
    st.add_argument("--out", required=True, help="CSV table, one row per object")
    st.add_argument("--threshold", type=probability, default=0.5, help="foreground probability threshold (0..1)")
    st.add_argument("--min-size", type=non_negative(float), default=0,
                    help="drop objects smaller than this (in --min-size-unit)")
    st.add_argument("--min-size-unit", choices=("voxels", "um3"), default="voxels",
                    help="voxels (a whole number), or µm³ at the voxel size (which must be known)")
    st.add_argument("--core-threshold", type=probability, help="keep only objects whose peak probability exceeds this "
                    "(hysteresis; the app's page suggests 0.9); default, or at or under --threshold: every object")
    st.add_argument("--voxel-size", type=voxel_size, help="z,y,x in nm (default: stored with the prediction)")
    st.add_argument("--split", action="store_true", help="split touching objects (watershed)")
    st.add_argument("--instances", help="also write the instance label volume (.tif, .tiff or .zarr)")
    for cmd in (pt, t, pr):
        cmd.add_argument("--dataset", help="HDF5 dataset path inside --raw")
        cmd.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    pt.set_defaults(func=cmd_pretrain)
    t.set_defaults(func=cmd_train)
    pr.set_defaults(func=cmd_predict)
    st.set_defaults(func=cmd_stats)
    return p


def _input_errors() -> tuple[type, ...]:
    from ml.checkpoint import CheckpointError
    from ml.infer import PredictionError
    from ml.labels import LabelStoreError
    from ml.pretrain import PretrainError

    return (InputError, CheckpointError, PredictionError, LabelStoreError, PretrainError, ValueError, OSError)


def _fail(message: str) -> None:
    print("error: " + " ".join(str(message).split()), file=sys.stderr, flush=True)


def _message(exc: Exception) -> str:
    """The error's own message; volume errors point to --help instead of listing every format."""
    short = getattr(exc, "short", None)
    if isinstance(short, str) and short != str(exc):
        return f"{short}; see --help for the accepted formats"
    return str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 bad input, 130 interrupted, 1 internal error)."""
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.traceback:
            raise
        if isinstance(exc, _input_errors()):
            _fail(_message(exc))
            return EXIT_BAD_INPUT
        if isinstance(exc, MemoryError):
            _fail(f"out of memory ({exc}): try a smaller --tile/--batch, or a machine with more RAM")
            return 1
        _fail(f"internal error ({type(exc).__name__}: {exc}); rerun with --traceback and report it")
        return 1
