"""The corpus through ``python -m ml``: every bad input is one ``error:`` line, exit code 2, no output.

Run in-process through ``ml.cli.main`` (the same function ``python -m ml`` calls), so the corpus
costs seconds; ``tests/ml/test_cli_bad_input.py`` holds the finer cases of each option.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from ml.checkpoint import save_checkpoint
from ml.cli import main
from ml.model import UNet2D
from tests.corpus.bad_inputs import MODELS, SHAPE, VOLUMES, VOXEL_SIZES, _good

FAST_TRAIN = ["--epochs", "1", "--steps-per-epoch", "2", "--base", "4", "--crop", "32", "--batch", "2",
              "--device", "cpu"]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    mask = np.zeros(SHAPE, np.uint8)
    mask[:, 8:20, 8:20] = 255
    tifffile.imwrite(d / "mask.tif", mask, photometric="minisblack")
    return {"raw": _good(d), "mask": d / "mask.tif",
            "model": save_checkpoint(d / "m.pt", UNet2D(base=4, depth=2), ["background", "mito"])}


def _refused(capsys, out: Path, *argv) -> str:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2, lines
    errors = [ln for ln in lines if ln.startswith("error")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines      # a progress note may come first
    assert not any("Traceback" in ln or ln.startswith(("train ", "predict ")) for ln in lines), lines
    assert not out.exists(), f"{out.name} was written although the input was refused"
    return errors[0]


@pytest.mark.parametrize("name", sorted(VOLUMES))
def test_predict_refuses_a_bad_volume(name, good, tmp_path, capsys):
    bad = VOLUMES[name](tmp_path)
    _refused(capsys, tmp_path / "out.zarr", "predict", "--model", good["model"], "--raw", bad,
             "--out", tmp_path / "out.zarr", "--device", "cpu")


@pytest.mark.parametrize("name", sorted(VOLUMES))
def test_train_refuses_a_bad_volume(name, good, tmp_path, capsys):
    bad = VOLUMES[name](tmp_path)
    _refused(capsys, tmp_path / "m.pt", "train", "--raw", bad, "--labels", good["mask"], "--out", tmp_path / "m.pt",
             *FAST_TRAIN)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_predict_refuses_a_bad_model(name, good, tmp_path, capsys):
    bad = MODELS[name](tmp_path)
    _refused(capsys, tmp_path / "out.zarr", "predict", "--model", bad, "--raw", good["raw"],
             "--out", tmp_path / "out.zarr", "--device", "cpu")


@pytest.mark.parametrize("text", VOXEL_SIZES)
def test_predict_refuses_a_malformed_voxel_size(text, good, tmp_path, capsys):
    _refused(capsys, tmp_path / "out.zarr", "predict", "--model", good["model"], "--raw", good["raw"],
             "--out", tmp_path / "out.zarr", "--voxel-size", text, "--device", "cpu")


def test_train_refuses_labels_of_another_shape(good, tmp_path, capsys):
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((4, 16, 16), np.uint8), photometric="minisblack")
    line = _refused(capsys, tmp_path / "m.pt", "train", "--raw", good["raw"], "--labels", tmp_path / "small.tif",
                    "--out", tmp_path / "m.pt", *FAST_TRAIN)
    assert "shape" in line


def test_train_refuses_label_values_outside_the_classes(good, tmp_path, capsys):
    labels = np.ones(SHAPE, np.uint8)
    labels[:, 8:20, 8:20] = 255
    tifffile.imwrite(tmp_path / "classes.tif", labels, photometric="minisblack")
    line = _refused(capsys, tmp_path / "m.pt", "train", "--raw", good["raw"], "--labels", tmp_path / "classes.tif",
                    "--label-values", "classes", "--out", tmp_path / "m.pt", *FAST_TRAIN)
    assert "255" in line


def test_outputs_that_cannot_be_written_are_refused_before_the_work(good, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    blocked = tmp_path / "a_file" / "sub"
    _refused(capsys, blocked / "m.pt", "train", "--raw", good["raw"], "--labels", good["mask"],
             "--out", blocked / "m.pt", *FAST_TRAIN)
    _refused(capsys, blocked / "p.zarr", "predict", "--model", good["model"], "--raw", good["raw"],
             "--out", blocked / "p.zarr", "--device", "cpu")
