"""``python -m ml pretrain``: self-supervised pre-training on an unlabeled volume (see ml.pretrain).

Writes body weights that ``python -m ml train --pretrained FILE`` starts from. An
interrupted run (Ctrl-C) leaves ``FILE.partial``; running the same command again resumes it.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ml.cli_run import EXIT_INTERRUPTED, Interrupt, Progress, device_from_arg, intensity_window
from ml.cli_checks import check_output_file


def run_pretrain(args) -> int:
    """Pre-train from ``args`` (see ml.cli.build_parser); returns the exit code."""
    from ml.checkpoint import DEFAULT_NORMALIZATION
    from ml.io.readers import check_segmentable, open_volume
    from ml.model import UNet2D
    from ml.device import precision
    from ml.pretrain import PretrainConfig, Source, mixed_args, partial_path, pretrain
    from ml.progress import Cancelled

    out = Path(args.out)
    check_output_file(out, "--out")
    device = device_from_arg(args.device)
    volume = check_segmentable(open_volume(args.raw, dataset=args.dataset))
    lo, hi = intensity_window(volume, dict(DEFAULT_NORMALIZATION))
    config = PretrainConfig(steps=args.steps, seed=args.seed, crop=args.crop,
                            max_seconds=args.minutes * 60 if args.minutes else None)
    model = UNet2D(base=args.base, depth=args.depth)
    resumed = partial_path(out).is_file()
    z, h, w = volume.shape
    print(f"pre-training a base-{args.base} U-Net on {volume.name} {z}x{h}x{w} for {config.steps} steps on "
          f"{device} in {precision(**mixed_args(config, device))}{' (resuming)' if resumed else ''}",
          file=sys.stderr, flush=True)
    start = time.monotonic()
    with Interrupt() as stop:
        try:
            result = pretrain(model, [Source(volume, lo, hi)], out, config, Progress("pretrain", "steps"), stop,
                              device, meta={"raw": str(args.raw), "source": "cli"})
        except Cancelled:
            print(f"interrupted: progress kept in {partial_path(out)} (rerun the same command to resume)",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
    print(f"saved {out}: {result.steps} steps, final loss {result.final_loss():.4f} (the last 50 steps' mean), "
          f"{time.monotonic() - start:.0f} s")
    return 0
