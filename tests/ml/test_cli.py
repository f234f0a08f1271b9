"""`python -m ml` end to end on a tiny synthetic TIFF, and its handling of bad input."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ml.cli import main
from ml.cli_run import Progress
from ml.synthetic import make_em_volume

ROOT = Path(__file__).resolve().parents[2]
FAST_TRAIN = ["--epochs", "2", "--steps-per-epoch", "3", "--base", "4", "--crop", "64", "--batch", "2",
              "--device", "cpu"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ml", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def tiffs(tmp_path_factory) -> tuple[Path, Path]:
    raw, mask = make_em_volume((3, 96, 96), seed=3)
    d = tmp_path_factory.mktemp("cli")
    tifffile.imwrite(d / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(d / "mask.tif", mask * 255, photometric="minisblack")
    return d / "raw.tif", d / "mask.tif"


def test_train_predict_stats_end_to_end(tiffs, tmp_path):
    raw, mask = tiffs
    model, pred, table = tmp_path / "m.pt", tmp_path / "pred.zarr", tmp_path / "objects.csv"
    r = run_cli("train", "--raw", str(raw), "--labels", str(mask), "--out", str(model), *FAST_TRAIN)
    assert r.returncode == 0, r.stderr
    assert "train 3/6 steps" in r.stderr and "train 6/6 steps" in r.stderr  # one line per epoch
    assert model.is_file() and Path(str(model) + ".json").is_file()

    r = run_cli("predict", "--model", str(model), "--raw", str(raw), "--out", str(pred), "--tile", "64",
                "--context", "8", "--mc-passes", "2", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "predict 3/3 slices" in r.stderr and "Mvoxel/s" in r.stdout
    from ml.infer import open_prediction

    group = open_prediction(pred)
    assert group["prob"].shape == (2, 3, 96, 96) and group["bald"].shape == (3, 96, 96)
    p = np.asarray(group["prob"][:], dtype=np.float32)
    assert np.allclose(p.sum(0), 1.0, atol=1e-2)

    r = run_cli("stats", "--pred", str(pred), "--out", str(table), "--threshold", "0.3", "--voxel-size", "40,4,4")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(table.open()))
    with table.open() as fh:
        header = fh.readline().strip().split(",")
    assert header[:4] == ["id", "voxels", "volume_nm3", "surface_nm2"]
    assert f"objects: {len(rows)} ({sum(r['edge'] == 'True' for r in rows)} cut by the volume's edge" in r.stdout
    if rows:  # volumes scale with the voxel size given on the command line
        assert float(rows[0]["volume_nm3"]) == pytest.approx(int(rows[0]["voxels"]) * 640.0)
    cored = tmp_path / "cored.csv"        # a core threshold keeps a subset: the objects with a sure peak
    r = run_cli("stats", "--pred", str(pred), "--out", str(cored), "--threshold", "0.3", "--core-threshold", "0.6")
    assert r.returncode == 0 and "core 0.6" in r.stderr, r.stderr
    assert len(list(csv.DictReader(cored.open()))) <= len(rows)
    sized = tmp_path / "sized.csv"        # 0.00005 µm³ at 40 x 4 x 4 nm (640 nm³ a voxel): 79 voxels or more
    r = run_cli("stats", "--pred", str(pred), "--out", str(sized), "--threshold", "0.3", "--voxel-size", "40,4,4",
                "--min-size", "0.00005", "--min-size-unit", "um3")
    assert r.returncode == 0 and "min size 79 voxels (5.06e-05 µm³)" in r.stderr, r.stderr
    assert [x for x in rows if int(x["voxels"]) >= 79] == list(csv.DictReader(sized.open()))


def test_pretrain_then_train_from_it(tiffs, tmp_path):
    raw, mask = tiffs
    enc, model = tmp_path / "enc.pt", tmp_path / "m.pt"
    r = run_cli("pretrain", "--raw", str(raw), "--out", str(enc), "--steps", "3", "--base", "4", "--crop", "32",
                "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "saved" in r.stdout and "3 steps" in r.stdout and enc.is_file()
    r = run_cli("train", "--raw", str(raw), "--labels", str(mask), "--out", str(model), "--pretrained", str(enc),
                *[a for a in FAST_TRAIN if a not in ("--base", "4")])
    assert r.returncode == 0, r.stderr
    from ml.checkpoint import read_info

    info = read_info(model)
    assert info["config"]["base"] == 4                      # the architecture comes from the pre-trained file
    assert info["meta"]["started_from"].startswith("pretrained") and "3 steps" in info["meta"]["started_from"]
    assert info["meta"]["self_train_steps"] == 0 and info["meta"]["train_config"]["anchor"] == 0.0   # 6 steps: not held


def test_a_model_reading_neighbour_slices_trains_predicts_and_continues(tiffs, tmp_path):
    """--z-radius 1: a one-slice body widened to three input channels; predict and --from read the neighbours."""
    raw, mask = tiffs
    enc, model, pred = tmp_path / "enc.pt", tmp_path / "m.pt", tmp_path / "pred.zarr"
    assert run_cli("pretrain", "--raw", str(raw), "--out", str(enc), "--steps", "2", "--base", "4", "--crop", "32",
                   "--device", "cpu").returncode == 0
    fast = [a for a in FAST_TRAIN if a not in ("--base", "4")]
    r = run_cli("train", "--raw", str(raw), "--labels", str(mask), "--out", str(model), "--pretrained", str(enc),
                "--z-radius", "1", *fast)
    assert r.returncode == 0, r.stderr
    from ml.checkpoint import read_info
    from ml.infer import open_prediction

    assert read_info(model)["config"]["in_channels"] == 3
    r = run_cli("predict", "--model", str(model), "--raw", str(raw), "--out", str(pred), "--tile", "64",
                "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert open_prediction(pred)["prob"].shape == (2, 3, 96, 96)
    r = run_cli("train", "--raw", str(raw), "--labels", str(mask), "--out", str(tmp_path / "m2.pt"), "--from",
                str(model), *fast)
    assert r.returncode == 0, r.stderr
    assert read_info(tmp_path / "m2.pt")["config"]["in_channels"] == 3
    r = run_cli("train", "--raw", str(raw), "--labels", str(mask), "--out", str(tmp_path / "m3.pt"),
                "--z-radius", "9", *FAST_TRAIN)
    assert r.returncode == 2 and "--z-radius" in r.stderr and "Traceback" not in r.stderr


def test_pretrain_bad_output_and_mismatched_weights_fail_before_work(tiffs, tmp_path):
    raw, mask = tiffs
    r = run_cli("pretrain", "--raw", str(raw), "--out", str(tmp_path), "--steps", "3")
    assert r.returncode == 2 and "is a folder" in r.stderr and "Traceback" not in r.stderr
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"nope")
    r = run_cli("train", "--raw", str(raw), "--labels", str(mask), "--out", str(tmp_path / "m.pt"),
                "--pretrained", str(junk), *FAST_TRAIN)
    assert r.returncode == 2 and "not readable pre-trained weights" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unreadable_raw_is_one_line_error_exit_2(tmp_path):
    bad = tmp_path / "raw.tif"
    bad.write_text("this is not a tiff")
    r = run_cli("predict", "--model", str(tmp_path / "m.pt"), "--raw", str(bad), "--out", str(tmp_path / "p.zarr"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "m.pt" in lines[0]


def _main(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_bad_tiff_raw_for_training(tiffs, tmp_path, capsys):
    bad = tmp_path / "raw.tif"
    bad.write_bytes(b"II*\x00garbage")
    code, err = _main(capsys, "train", "--raw", str(bad), "--labels", str(tiffs[1]), "--out", str(tmp_path / "m.pt"))
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.pt").exists()


def test_label_shape_mismatch(tiffs, tmp_path, capsys):
    other = tmp_path / "small.tif"
    tifffile.imwrite(other, np.zeros((3, 50, 50), np.uint8), photometric="minisblack")
    code, err = _main(capsys, "train", "--raw", str(tiffs[0]), "--labels", str(other), "--out", str(tmp_path / "m.pt"))
    assert code == 2 and "shape" in err and "(3, 50, 50)" in err


def test_missing_checkpoint_and_foreign_checkpoint(tiffs, tmp_path, capsys):
    code, err = _main(capsys, "predict", "--model", str(tmp_path / "nope.pt"), "--raw", str(tiffs[0]),
                      "--out", str(tmp_path / "p.zarr"))
    assert code == 2 and "nope.pt" in err
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"\x00" * 64)
    code, err = _main(capsys, "predict", "--model", str(foreign), "--raw", str(tiffs[0]), "--out", str(tmp_path / "p.zarr"))
    assert code == 2 and "checkpoint" in err


def test_stats_on_something_that_is_not_a_prediction(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    code, err = _main(capsys, "stats", "--pred", str(tmp_path / "folder"), "--out", str(tmp_path / "o.csv"))
    assert code == 2 and "prediction" in err
    assert not (tmp_path / "o.csv").exists()


def test_predict_never_overwrites_an_unrelated_folder(tiffs, tmp_path, capsys):
    import torch

    from ml.checkpoint import save_checkpoint
    from ml.model import UNet2D

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", UNet2D(base=4, depth=2), ["background", "mito"])
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    code, err = _main(capsys, "predict", "--model", str(tmp_path / "m.pt"), "--raw", str(tiffs[0]),
                      "--out", str(precious), "--device", "cpu")
    assert code == 2 and "not a prediction" in err
    assert (precious / "thesis.txt").read_text() == "keep me"


def test_sparse_class_labels_and_warm_start(tiffs, tmp_path, capsys):
    """--label-values classes: 0 = unlabeled; fine-tuning keeps the parent's classes and records it."""
    raw, mask = tiffs
    m = tifffile.imread(mask)
    sparse = np.zeros_like(m)
    sparse[1, 20:60, 20:60] = np.where(m[1, 20:60, 20:60] > 0, 2, 1)
    lab = tmp_path / "sparse.tif"
    tifffile.imwrite(lab, sparse, photometric="minisblack")
    args = ["train", "--raw", str(raw), "--labels", str(lab), "--label-values", "classes", *FAST_TRAIN]
    assert main([*args, "--out", str(tmp_path / "a.pt")]) == 0
    assert "no self-training: it needs 500 steps on the labels first" in capsys.readouterr().err   # 6 are too few
    assert main([*args, "--out", str(tmp_path / "b.pt"), "--from", str(tmp_path / "a.pt")]) == 0
    assert "self-training: the last 6 steps" in capsys.readouterr().err        # a warm start: every step
    assert main([*args, "--out", str(tmp_path / "c.pt"), "--no-self-train"]) == 0
    assert "self-training" not in capsys.readouterr().err
    from ml.checkpoint import read_info

    assert [read_info(tmp_path / f"{n}.pt")["meta"]["self_train_steps"] for n in "abc"] == [0, 6, 0]
    info = read_info(tmp_path / "b.pt")
    assert info["meta"]["parent"] == str(tmp_path / "a.pt")
    assert info["meta"]["labels_used"] == int(np.count_nonzero(sparse))
    assert len(info["classes"]) == 2


def test_empty_labels_rejected(tiffs, tmp_path, capsys):
    lab = tmp_path / "empty.tif"
    tifffile.imwrite(lab, np.zeros((3, 96, 96), np.uint8), photometric="minisblack")
    code, err = _main(capsys, "train", "--raw", str(tiffs[0]), "--labels", str(lab), "--label-values", "classes",
                      "--out", str(tmp_path / "m.pt"))
    assert code == 2 and "no labeled pixels" in err


def test_bad_voxel_size_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["stats", "--pred", str(tmp_path), "--out", "o.csv", "--voxel-size", "40,4"])
    assert exc.value.code == 2
    assert "z,y,x" in capsys.readouterr().err


def test_progress_is_throttled_to_marks_and_end():
    out = io.StringIO()
    p = Progress("train", "steps", interval=1e9, mark=10, stream=out)
    for step in range(1, 26):
        p(step, 25, {"loss": 0.5, "eta_s": 75})
    lines = out.getvalue().splitlines()
    assert [ln.split()[1] for ln in lines] == ["1/25", "10/25", "20/25", "25/25"]
    assert "eta 1m15s" in lines[0] and "eta" not in lines[-1]
