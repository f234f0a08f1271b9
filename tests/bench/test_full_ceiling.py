"""bench.full_ceiling: full supervision alone on a toy volume, 2D and 2.5D, and its bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tifffile

from ml.synthetic import make_em_volume

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    raw, mask = make_em_volume((5, 128, 128), seed=2)
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", mask * 255, photometric="minisblack")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "bench.full_ceiling", "--raw", str(tmp_path / "raw.tif"), "--labels",
                           str(tmp_path / "mask.tif"), "--tiny", "--device", "cpu", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_reference_alone_for_two_seeds_reading_neighbours(tmp_path):
    r = _run(tmp_path, "--out", str(tmp_path / "out"), "--full-seeds", "2", "--z-radius", "1", "--pretrain", "none")
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads((tmp_path / "out" / "full.json").read_text())
    assert saved["protocol"]["z_radius"] == 1 and saved["weights"] is None
    assert [row["seed"] for row in saved["rows"]] == [0, 1]
    for row in saved["rows"]:
        assert 0.0 <= row["iou"] <= 1.0 and 0.0 <= row["iou_z"] <= 1.0 and row["trace"]
        assert f"seed {row['seed']}: IoU {row['iou']:.3f}" in r.stdout


def test_bad_input_is_one_clear_line(tmp_path):
    r = _run(tmp_path, "--out", str(tmp_path / "out"), "--z-radius", "-1")
    assert r.returncode == 2 and "--z-radius >= 0" in r.stderr and "Traceback" not in r.stderr
