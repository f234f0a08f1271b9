"""Checkpoints: round trip, sidecar, corrupt files, atomic replace."""
from __future__ import annotations

import json

import pytest
import torch

from ml import checkpoint as ck
from ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sidecar_path
from ml.model import UNet2D

CLASSES = [{"name": "background", "color": "#1f77b4"}, {"name": "mitochondria", "color": "#ff7f0e"}]


def model(seed=0) -> UNet2D:
    torch.manual_seed(seed)
    return UNet2D(base=4, depth=2, n_classes=2, dropout=0.2).eval()


def test_round_trip_identical_outputs_and_info(tmp_path):
    m = model()
    hist = [{"step": 1, "loss": 0.7, "val_iou": None}]
    meta = {"parent": "v0.pt", "labels_used": 1234}
    p = save_checkpoint(tmp_path / "v1.pt", m, CLASSES, history=hist, meta=meta,
                        normalization={"lo_pct": 0.5, "hi_pct": 99.0})
    m2, info = load_checkpoint(p)
    x = torch.randn(2, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert not m2.training
    assert info["config"] == m.config
    assert info["classes"] == CLASSES and info["history"] == hist
    assert info["meta"]["parent"] == "v0.pt" and info["meta"]["labels_used"] == 1234
    assert "created" in info["meta"]
    assert info["normalization"] == {"lo_pct": 0.5, "hi_pct": 99.0}


def test_sidecar_json_has_everything_but_weights(tmp_path):
    p = save_checkpoint(tmp_path / "m.pt", model(), ["bg", "mito"])
    side = json.loads(sidecar_path(p).read_text())
    assert side["config"]["base"] == 4 and side["classes"] == ["bg", "mito"]
    assert "state_dict" not in side
    assert ck.read_info(p)["config"] == side["config"]


def test_corrupt_foreign_and_missing_files_raise_checkpoint_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an ActiveSeg"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    good = save_checkpoint(tmp_path / "g.pt", model(), CLASSES)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError):
        load_checkpoint(good)


def test_failing_save_leaves_old_file_intact(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "m.pt", model(0), CLASSES, meta={"v": 1})
    before = p.read_bytes()

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(p, model(1), CLASSES, meta={"v": 2})
    assert p.read_bytes() == before
    assert json.loads(sidecar_path(p).read_text())["meta"]["v"] == 1
    assert [f.name for f in tmp_path.iterdir()] and not list(tmp_path.glob("*.tmp"))


def test_bad_arguments_raise_before_writing(tmp_path):
    with pytest.raises(ValueError, match="n_classes"):
        save_checkpoint(tmp_path / "m.pt", model(), ["only-one"])
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "m.pt", model(), CLASSES, meta={"x": object()})
    assert not (tmp_path / "m.pt").exists()


def test_load_to_device(tmp_path):
    p = save_checkpoint(tmp_path / "m.pt", model(), CLASSES)
    m, _ = load_checkpoint(p, device="cpu")
    assert next(m.parameters()).device.type == "cpu"
