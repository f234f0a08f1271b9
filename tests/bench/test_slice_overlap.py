"""bench.slice_overlap: neighbouring slices' label overlap and image shift, and its bad input."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from bench.slice_overlap import neighbour_overlap
from ml.synthetic import make_em_volume

ROOT = Path(__file__).resolve().parents[2]


def test_a_shifted_copy_is_found_and_identical_labels_overlap_fully():
    raw, mask = make_em_volume((2, 96, 96), seed=4)
    raw[1] = np.roll(raw[0], (3, -2), axis=(0, 1))
    mask[1] = mask[0]
    out = neighbour_overlap(raw, mask)
    assert out["iou"] == [1.0]
    np.testing.assert_allclose(out["shift"][0], [-3, 2], atol=0.25)


def test_the_command_prints_both_and_refuses_mismatched_labels(tmp_path):
    raw, mask = make_em_volume((4, 64, 64), seed=1)
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", mask * 255, photometric="minisblack")
    tifffile.imwrite(tmp_path / "other.tif", mask[:2] * 255, photometric="minisblack")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "bench.slice_overlap", "--raw", str(tmp_path / "raw.tif"), "--labels"]
    r = subprocess.run(cmd + [str(tmp_path / "mask.tif")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "(3 pairs)" in r.stdout and "median |dy|" in r.stdout, r.stderr
    r = subprocess.run(cmd + [str(tmp_path / "other.tif")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "raw's shape" in r.stderr and "Traceback" not in r.stderr
