"""What the re-scoring tools' tests share: a toy EM volume on disk and a bench module run as the CLI runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tifffile

from ml.synthetic import make_em_volume

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def bench(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m module args`` in a child process, one thread, its output captured."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=ENV, timeout=300)


def tiny_volume(folder: Path) -> list[str]:
    """A 4 x 256 x 256 synthetic volume and its mask as TIFFs in ``folder``; the ``--raw``/``--labels`` arguments."""
    raw, mask = make_em_volume((4, 256, 256), seed=2)
    tifffile.imwrite(folder / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(folder / "mask.tif", mask * 255, photometric="minisblack")
    return ["--raw", str(folder / "raw.tif"), "--labels", str(folder / "mask.tif")]


def one_model_run(folder: Path) -> tuple[list[str], Path]:
    """A ``bench.initial_steps`` run of one 4-step seed on the dev split of the toy volume: its ``--raw``/``--labels``
    arguments and its folder, for the tools that re-score a run's saved models."""
    paths = tiny_volume(folder)
    run = folder / "run"
    r = bench("bench.initial_steps", *paths, "--out", str(run), "--tiny", "--steps", "4", "--seeds", "1", "--base", "4")
    assert r.returncode == 0, r.stderr
    return paths, run
