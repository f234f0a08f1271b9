"""`python -m ml` answers bad input with one `error:` line and exit code 2, checked before any work.

Every bad input is built here in tmp_path; each test also checks that no output was left behind.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from ml.checkpoint import save_checkpoint
from ml.cli import main
from ml.io import SUPPORTED_FORMATS
from ml.model import UNet2D
from ml.volume import Volume

FAST_TRAIN = ["--epochs", "1", "--steps-per-epoch", "2", "--base", "4", "--crop", "32", "--batch", "2",
              "--device", "cpu"]
SHAPE = (4, 32, 32)


def _tif(path: Path, arr: np.ndarray) -> Path:
    tifffile.imwrite(path, arr, photometric="minisblack")
    return path


def _raw(path: Path, dtype=np.uint8) -> Path:
    return _tif(path, (np.random.default_rng(0).random(SHAPE) * 200).astype(dtype))


def _mask(path: Path) -> Path:
    mask = np.zeros(SHAPE, np.uint8)
    mask[:, 8:20, 8:20] = 255
    return _tif(path, mask)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A raw volume, a 0/255 mask, a 2-class model and a finished prediction (outside each test's tmp_path)."""
    d = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    model = save_checkpoint(d / "m.pt", UNet2D(base=4, depth=2), ["background", "mito"])
    raw, pred = _raw(d / "raw.tif"), d / "pred.zarr"
    assert main(["predict", "--model", str(model), "--raw", str(raw), "--out", str(pred), "--device", "cpu"]) == 0
    return {"raw": raw, "mask": _mask(d / "mask.tif"), "model": model, "pred": pred}


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    """Exit code and the non-empty stderr lines; never a traceback."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip()]


def _one_error(capsys, *argv: str) -> str:
    """The command fails with exit code 2 and exactly one stderr line, an `error:` line."""
    code, lines = _run(capsys, *argv)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _last_error(capsys, *argv: str) -> str:
    """Exit code 2, and the error is the last stderr line (a progress note such as 'reading labels' may precede)."""
    code, lines = _run(capsys, *argv)
    assert code == 2, lines
    assert lines[-1].startswith("error: ") and sum(ln.startswith("error") for ln in lines) == 1, lines
    assert not any(ln.startswith("train ") for ln in lines), "failed only after training"
    return lines[-1]


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ----------------------------------------------------------------------------- 1. NaN / inf voxels
def test_percentiles_ignore_nan_and_inf():
    arr = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    arr[0, 0, 0], arr[1, 0, 0], arr[2, 0, 0] = np.nan, np.inf, -np.inf
    lo, hi = Volume.from_array(arr).percentiles()
    assert np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi <= 1


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_predict_and_train_on_a_volume_with_one_bad_voxel_give_finite_results(inputs, tmp_path, capsys, bad):
    raw = np.random.default_rng(1).random(SHAPE).astype(np.float32)
    raw[0, 0, 0] = bad
    path = _tif(tmp_path / "raw.tif", raw)
    pred, model = tmp_path / "p.zarr", tmp_path / "m.pt"
    code, lines = _run(capsys, "predict", "--model", inputs["model"], "--raw", path, "--out", pred, "--device", "cpu")
    assert code == 0, lines
    from ml.infer import open_prediction

    assert np.isfinite(np.asarray(open_prediction(pred)["prob"][:], np.float32)).all()
    code, lines = _run(capsys, "train", "--raw", path, "--labels", inputs["mask"], "--out", model, *FAST_TRAIN)
    assert code == 0, lines
    from ml.checkpoint import load_checkpoint

    net, _ = load_checkpoint(model)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_all_nan_volume_is_refused_before_writing(inputs, tmp_path, capsys):
    path = _tif(tmp_path / "raw.tif", np.full(SHAPE, np.nan, np.float32))
    line = _one_error(capsys, "predict", "--model", inputs["model"], "--raw", path, "--out", tmp_path / "p.zarr",
                      "--device", "cpu")
    assert "NaN" in line and "raw.tif" in line
    assert _files(tmp_path) == {"raw.tif"}


# ----------------------------------------------------------------------------- 2. output paths, before the work
def test_train_out_is_a_folder(inputs, tmp_path, capsys):
    (tmp_path / "model.pt").mkdir()
    line = _one_error(capsys, "train", "--raw", inputs["raw"], "--labels", inputs["mask"], "--out",
                      tmp_path / "model.pt", *FAST_TRAIN)
    assert "--out" in line and "is a folder" in line
    assert _files(tmp_path) == {"model.pt"} and not any((tmp_path / "model.pt").iterdir())


def test_train_out_under_a_file(inputs, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    line = _one_error(capsys, "train", "--raw", inputs["raw"], "--labels", inputs["mask"], "--out",
                      tmp_path / "notes.txt" / "m.pt", *FAST_TRAIN)
    assert "cannot write --out" in line and "not a folder" in line
    assert _files(tmp_path) == {"notes.txt"}


def test_train_never_overwrites_a_file_that_is_not_a_checkpoint(inputs, tmp_path, capsys):
    precious = _raw(tmp_path / "data.tif")
    before = precious.read_bytes()
    line = _one_error(capsys, "train", "--raw", inputs["raw"], "--labels", inputs["mask"], "--out", precious,
                      *FAST_TRAIN)
    assert "not an ActiveSeg checkpoint" in line
    assert precious.read_bytes() == before and _files(tmp_path) == {"data.tif"}


def test_predict_out_under_a_file(inputs, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    line = _one_error(capsys, "predict", "--model", inputs["model"], "--raw", inputs["raw"], "--out",
                      tmp_path / "notes.txt" / "p.zarr", "--device", "cpu")
    assert "cannot write --out" in line
    assert _files(tmp_path) == {"notes.txt"}


@pytest.mark.parametrize("instances", ["x.png", "x", "folder.zarr", "folder.tif"])
def test_stats_bad_instances_path_fails_before_the_csv(inputs, tmp_path, capsys, instances):
    (tmp_path / "folder.zarr").mkdir()
    (tmp_path / "folder.zarr" / "keep.txt").write_text("x")
    (tmp_path / "folder.tif").mkdir()
    line = _one_error(capsys, "stats", "--pred", inputs["pred"], "--out", tmp_path / "o.csv",
                      "--instances", tmp_path / instances)
    assert "--instances" in line
    assert _files(tmp_path) == {"folder.zarr", "folder.tif"}


def test_stats_core_threshold_is_a_probability(inputs, tmp_path, capsys):
    line = _one_error(capsys, "stats", "--pred", inputs["pred"], "--out", tmp_path / "o.csv", "--core-threshold", "1")
    assert "--core-threshold" in line and "strictly between 0 and 1" in line
    assert not (tmp_path / "o.csv").exists()


def test_stats_min_size_in_um3_needs_a_voxel_size(inputs, tmp_path, capsys):
    line = _one_error(capsys, "stats", "--pred", inputs["pred"], "--out", tmp_path / "o.csv", "--min-size", "0.01",
                      "--min-size-unit", "um3")
    assert "needs the volume's voxel size" in line and "--voxel-size" in line
    assert not (tmp_path / "o.csv").exists()


def test_stats_out_is_a_folder(inputs, tmp_path, capsys):
    (tmp_path / "o.csv").mkdir()
    line = _one_error(capsys, "stats", "--pred", inputs["pred"], "--out", tmp_path / "o.csv")
    assert "--out" in line and "is a folder" in line


# ----------------------------------------------------------------------------- 3. silent nonsense
def test_classes_with_255_names_the_bad_value(inputs, tmp_path, capsys):
    lab = np.zeros(SHAPE, np.uint8)
    lab[:, 8:20, 8:20], lab[:, :4, :4] = 255, 1
    path = _tif(tmp_path / "lab.tif", lab)
    line = _last_error(capsys, "train", "--raw", inputs["raw"], "--labels", path, "--label-values", "classes",
                       "--out", tmp_path / "m.pt", *FAST_TRAIN)
    assert "255" in line and "--label-values mask" in line
    assert _files(tmp_path) == {"lab.tif"}


@pytest.mark.parametrize("mode,value", [("mask", 0), ("mask", 255), ("classes", 1), ("classes", 2)])
def test_labels_of_one_class_are_refused(inputs, tmp_path, capsys, mode, value):
    path = _tif(tmp_path / "lab.tif", np.full(SHAPE, value, np.uint8))
    line = _last_error(capsys, "train", "--raw", inputs["raw"], "--labels", path, "--label-values", mode,
                       "--out", tmp_path / "m.pt", *FAST_TRAIN)
    assert "one class" in line
    assert _files(tmp_path) == {"lab.tif"}


def test_fine_tuning_on_one_class_warns(inputs, tmp_path, capsys):
    path = _tif(tmp_path / "lab.tif", np.zeros(SHAPE, np.uint8))
    code, lines = _run(capsys, "train", "--raw", inputs["raw"], "--labels", path, "--from", inputs["model"],
                       "--out", tmp_path / "m.pt", *FAST_TRAIN)
    assert code == 0 and any(ln.startswith("warning:") and "one class" in ln for ln in lines), lines


@pytest.mark.parametrize("threshold", ["nan", "2", "0", "1", "-0.5", "inf", "high"])
def test_threshold_outside_0_1_is_refused(inputs, tmp_path, capsys, threshold):
    line = _one_error(capsys, "stats", "--pred", inputs["pred"], "--out", tmp_path / "o.csv",
                      "--threshold", threshold)
    assert "--threshold" in line and "between 0 and 1" in line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("option", ["--context", "--mc-passes"])
def test_negative_predict_counts_are_refused(inputs, tmp_path, capsys, option):
    line = _one_error(capsys, "predict", "--model", inputs["model"], "--raw", inputs["raw"], "--out",
                      tmp_path / "p.zarr", option, "-8", "--device", "cpu")
    assert option in line and "-8" in line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("weight", ["0.5", "-0.1", "nan", "half"])
def test_a_z_consensus_that_outweighs_the_slice_is_refused(inputs, tmp_path, capsys, weight):
    line = _one_error(capsys, "predict", "--model", inputs["model"], "--raw", inputs["raw"], "--out",
                      tmp_path / "p.zarr", "--z-consensus", weight, "--device", "cpu")
    assert "--z-consensus" in line and "below 0.5" in line
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- 4. messages that say what is wrong
def _huge_tiff(path: Path, side: int = 2**31) -> Path:
    """A 216-byte TIFF whose header claims side x side deflate-compressed pixels."""
    tags = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1),
            (273, 4, 1, 200), (277, 3, 1, 1), (278, 4, 1, side), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    data = b"II*\x00" + struct.pack("<I", 8) + ifd
    path.write_bytes(data + b"\x00" * (216 - len(data)))
    return path


def test_absurd_tiff_header_is_too_large_not_out_of_memory(inputs, tmp_path, capsys):
    path = _huge_tiff(tmp_path / "huge.tif")
    line = _one_error(capsys, "predict", "--model", inputs["model"], "--raw", path, "--out", tmp_path / "p.zarr",
                      "--device", "cpu")
    assert "too large" in line and "2147483648 x 2147483648" in line and "out of memory" not in line
    assert _files(tmp_path) == {"huge.tif"}


def test_random_file_as_model_is_one_short_line(inputs, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(300))
    line = _one_error(capsys, "predict", "--model", junk, "--raw", inputs["raw"], "--out", tmp_path / "p.zarr")
    assert "ActiveSeg checkpoint" in line and str(junk) in line
    assert "weights_only" not in line and len(line) < 120 + len(str(junk))
    assert _files(tmp_path) == {"junk.pt"}


def test_unsupported_format_points_to_help_instead_of_listing(inputs, tmp_path, capsys):
    (tmp_path / "vol.xyz").write_bytes(b"\x00" * 100)
    line = _one_error(capsys, "predict", "--model", inputs["model"], "--raw", tmp_path / "vol.xyz",
                      "--out", tmp_path / "p.zarr")
    assert ".xyz" in line and "see --help" in line and SUPPORTED_FORMATS not in line
    assert _files(tmp_path) == {"vol.xyz"}


def test_help_lists_the_accepted_formats(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--help"])
    assert exc.value.code == 0
    assert " ".join(SUPPORTED_FORMATS.split()) in " ".join(capsys.readouterr().out.split())


def test_4d_tiff_names_its_shape_plainly(inputs, tmp_path, capsys):
    path = _tif(tmp_path / "4d.tif", np.zeros((2, 3, 32, 32), np.uint8))
    line = _one_error(capsys, "predict", "--model", inputs["model"], "--raw", path, "--out", tmp_path / "p.zarr")
    assert "4-D image (2, 3, 32, 32)" in line and "3-D (Z, Y, X)" in line and "QQ" not in line
    assert _files(tmp_path) == {"4d.tif"}


# ----------------------------------------------------------------------------- 5. --voxel-size
@pytest.mark.parametrize("text", ["a,b", "0,1,1", "-1,1,1", "1,1", "nan,1,1", "1,inf,1", "1,1,1,1", ""])
def test_malformed_voxel_size_is_one_line(inputs, tmp_path, capsys, text):
    line = _one_error(capsys, "stats", "--pred", inputs["pred"], "--out", tmp_path / "o.csv", "--voxel-size", text)
    assert "--voxel-size" in line and "z,y,x" in line
    assert not any(tmp_path.iterdir())
