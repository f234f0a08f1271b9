"""A saved ``bench.initial_steps`` run opened to re-score its models (``bench.slice_spread``, ``bench.error_kinds``).

One command line and one way to open the run, so every re-scoring tool reads the same models and scores
the same rows: every slice of the run's scored rows (``eval_slices=0``), as the run's protocol split them.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ml.device import pick_device

from .al import check_inputs
from .al_protocol import BenchData, Protocol, load_data
from .saved_runs import model_paths, read_summary, run_protocol


@dataclass
class SavedRun:
    """The run's summary, the step count re-scored, its models by seed and the protocol scoring every slice."""

    folder: Path
    summary: dict
    steps: int
    paths: dict[int, Path]
    proto: Protocol


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options every re-scoring tool takes."""
    p.add_argument("--run", required=True, help="a bench.initial_steps --out folder (summary.json, steps<N>/)")
    p.add_argument("--raw", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--steps", type=int, help="which step count's models (default: the run's smallest)")
    p.add_argument("--device", help="cpu / cuda (default: cuda when present)")
    p.add_argument("--tiny", action="store_true", help="the toy protocol (tests)")


def open_run(args: argparse.Namespace) -> SavedRun:
    """The run ``args`` name; ``ValueError`` / ``OSError`` say what is missing or does not match."""
    folder = Path(args.run)
    summary = read_summary(folder)
    steps, paths = model_paths(folder, summary, args.steps)
    proto = replace(run_protocol(summary, args.tiny), eval_slices=0)
    check_inputs(args.raw, args.labels, proto)
    return SavedRun(folder, summary, steps, paths, proto)


def open_or_exit(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[SavedRun, BenchData, torch.device]:
    """The run ``args`` name, its data split as it was, and the device; a bad run ends the CLI with exit 2 and
    one line (every re-scoring tool's start)."""
    try:
        run = open_run(args)
    except (ValueError, OSError) as exc:
        p.exit(2, f"error: {' '.join(str(exc).split())}\n")
    return run, load_data(args.raw, args.labels, run.proto), pick_device(args.device)
