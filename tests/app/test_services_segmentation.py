"""Segmentation service: prediction zarr, overlay path, post-processing into objects, cancel."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import zarr
from dash import no_update

from app.db import session_scope
from app.errors import UserError
from app.models import Segmentation
from app.services import predictions, projects, segmentation, training
from ml.infer import foreground_probability, open_prediction
from ml.progress import Cancelled
from tests.app.envs import TINY, add_model_version, paint_ground_truth, synthetic_env

TRAIN = {**TINY, "train": {**TINY["train"], "eval_every": 10}}


def _make_env(workspace: Path) -> SimpleNamespace:
    return synthetic_env(workspace, (3, 96, 96), seed=1, extra=TRAIN)


@pytest.fixture
def env(tmp_path):
    return _make_env(tmp_path / "ws")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A model trained once per module on this volume's labels (its checkpoint file)."""
    env = _make_env(tmp_path_factory.mktemp("trained") / "ws")
    paint_ground_truth(env, range(3), 64)
    training.train_model(env.config, env.pid, lr=3e-3, steps=60)
    return Path(training.list_versions(env.config, env.pid)[0]["path"])


@pytest.fixture
def trained(env, checkpoint):
    """A fresh workspace whose active model is the module's trained checkpoint."""
    env.model_id = add_model_version(env, lambda path: shutil.copyfile(checkpoint, path))
    return env


def test_segment_needs_a_model(env):
    with pytest.raises(UserError, match="No trained model"):
        segmentation.segment_volume(env.config, env.vid)
    assert predictions.current(env.config, env.vid) is None


def test_segment_writes_complete_prediction_and_overlay_path(trained):
    res = segmentation.segment_volume(trained.config, trained.vid, mc=True)
    path = Path(res["pred_path"])
    group = open_prediction(path)
    assert group["prob"].shape == (2, 3, 96, 96) and "bald" in set(group.array_keys())
    assert res["model_id"] == trained.model_id
    assert predictions.current(trained.config, trained.vid).path == path
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_postprocess_stores_instances_table_and_summary(trained):
    segmentation.segment_volume(trained.config, trained.vid)
    res = segmentation.postprocess(trained.config, trained.vid, {"threshold": 0.5, "min_size": 5})
    seg_id = res["segmentation_id"]
    assert segmentation.latest_segmentation_id(trained.config, trained.vid) == seg_id
    inst = np.asarray(segmentation.open_instances(trained.config, seg_id)[:])
    rows = segmentation.object_rows(trained.config, seg_id)
    ids = sorted(int(i) for i in np.unique(inst) if i)
    assert res["summary"]["count"] == len(rows) == len(ids) > 0
    assert sorted(r["id"] for r in rows) == ids
    total = sum(r["volume_um3"] for r in rows)
    view = segmentation.summary_view(res["summary"])
    assert view["count"] == len(rows) and view["total_volume_um3"] == pytest.approx(total)
    cut = [r["id"] for r in rows if r["edge"] == "cut"]
    assert view["edge_count"] == len(cut) and {r["edge"] for r in rows} <= {"cut", ""}
    faces = np.zeros(inst.shape, bool)
    faces[[0, -1]], faces[:, [0, -1]], faces[:, :, [0, -1]] = True, True, True
    assert sorted(cut) == sorted(int(i) for i in np.unique(inst[faces]) if i)
    assert view["total_volume_um3"] == pytest.approx(np.count_nonzero(inst) * 40 * 5 * 5 / 1e9)
    nav = segmentation.object_nav(trained.config, seg_id, rows[0]["id"])
    assert rows[0]["bbox_z0"] <= nav["z"] < rows[0]["bbox_z1"] and nav["vid"] == trained.vid
    mesh = segmentation.object_meshes(trained.config, seg_id, max_objects=2)
    assert mesh["units"] == "µm" and len(mesh["i"]) > 0 and len(set(mesh["object_id"])) <= 2
    coarse = segmentation.object_meshes(trained.config, seg_id, max_objects=2, max_faces=len(mesh["i"]) // 3)
    assert coarse["step"] > mesh["step"] and len(coarse["i"]) < len(mesh["i"])


def test_a_min_size_in_um3_is_read_at_the_volumes_voxel_size(trained):
    """40 x 5 x 5 nm voxels hold 1e-6 µm³: 5e-6 µm³ keeps the objects a min size of 5 voxels keeps, the record
    keeps voxels, the status names both; a volume without a voxel size says what to do instead."""
    segmentation.segment_volume(trained.config, trained.vid)
    by_voxels = segmentation.postprocess(trained.config, trained.vid, {"min_size": 5})
    physical = segmentation.postprocess(trained.config, trained.vid, {"min_size": "5e-6", "min_size_unit": "um3"})
    assert physical["settings"]["min_size"] == 5 and physical["summary"] == by_voxels["summary"]
    assert physical["settings_text"] == "threshold 0.5, min size 5 voxels (5e-06 µm³)"
    raw = np.zeros((2, 32, 32), np.uint8)
    bare = projects.add_volume_from_array(trained.config, trained.pid, "no voxel size", raw)["id"]
    with pytest.raises(UserError, match="needs the volume's voxel size: set it in the Data panel"):
        segmentation.segment_and_measure(trained.config, bare, settings={"min_size": 1, "min_size_unit": "um3"})


def test_an_object_table_from_before_the_edge_column_still_lists(trained):
    segmentation.segment_volume(trained.config, trained.vid)
    seg_id = segmentation.postprocess(trained.config, trained.vid, {"min_size": 5})["segmentation_id"]
    path = Path(segmentation.segmentation_info(trained.config, seg_id)["table_path"])
    pd.read_csv(path).drop(columns="edge").to_csv(path, index=False)     # as written before v40
    rows = segmentation.object_rows(trained.config, seg_id)
    assert rows and all(r["edge"] == "" for r in rows)


def test_threshold_changes_objects_and_each_run_is_kept(trained):
    segmentation.segment_volume(trained.config, trained.vid)
    low = segmentation.postprocess(trained.config, trained.vid, {"threshold": 0.9})
    high = segmentation.postprocess(trained.config, trained.vid, {"threshold": 0.1})
    vox = [np.count_nonzero(segmentation.open_instances(trained.config, r["segmentation_id"])[:]) for r in (low, high)]
    assert vox[0] < vox[1]
    with session_scope(trained.config) as s:
        assert s.query(Segmentation).filter(Segmentation.instances_path.isnot(None)).count() == 2


def test_postprocess_needs_a_prediction_and_valid_settings(trained):
    with pytest.raises(UserError, match="No prediction"):
        segmentation.postprocess(trained.config, trained.vid)
    segmentation.segment_volume(trained.config, trained.vid)
    with pytest.raises(UserError, match="Threshold"):
        segmentation.postprocess(trained.config, trained.vid, {"threshold": 1.5})
    with pytest.raises(UserError, match="core threshold must be between 0 and 1"):
        segmentation.postprocess(trained.config, trained.vid, {"threshold": 0.5, "core_threshold": 1.5})


def test_a_core_threshold_keeps_only_objects_the_model_is_sure_of(trained):
    segmentation.segment_volume(trained.config, trained.vid)
    every = segmentation.postprocess(trained.config, trained.vid, {"threshold": 0.3})
    fg = np.stack([foreground_probability(open_prediction(predictions.current(trained.config, trained.vid).path), z)
                   for z in range(3)])
    inst = np.asarray(segmentation.open_instances(trained.config, every["segmentation_id"])[:])
    peaks = sorted(float(fg[inst == i].max()) for i in range(1, int(inst.max()) + 1))
    assert len(peaks) >= 2, peaks
    core = (peaks[0] + peaks[-1]) / 2                      # between the faintest object's peak and the surest's
    cored = segmentation.postprocess(trained.config, trained.vid, {"threshold": 0.3, "core_threshold": core})
    assert cored["summary"]["count"] == sum(p > core for p in peaks) < every["summary"]["count"]
    assert cored["settings"]["core_threshold"] == core
    params = segmentation.segmentation_info(trained.config, cored["segmentation_id"])["params"]
    assert params["core_threshold"] == core


def test_cancel_keeps_the_previous_prediction(trained):
    first = Path(segmentation.segment_volume(trained.config, trained.vid)["pred_path"])
    before = np.asarray(zarr.open_group(str(first), mode="r")["prob"][:])
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled):
        segmentation.segment_volume(trained.config, trained.vid, cancel=cancel)
    assert predictions.current(trained.config, trained.vid).path == first
    assert np.array_equal(np.asarray(open_prediction(first)["prob"][:]), before)
    assert not [p for p in first.parent.iterdir() if ".tmp-" in p.name]


def test_slice_uncertainty_of_the_overlaid_prediction(trained, monkeypatch):
    assert segmentation.slice_uncertainty(trained.config, trained.vid) is None
    path = Path(segmentation.segment_volume(trained.config, trained.vid)["pred_path"])
    res = segmentation.slice_uncertainty(trained.config, trained.vid)
    assert res["values"] == open_prediction(path).attrs["slice_entropy"] and len(res["values"]) == 3
    assert res["model_id"] == trained.model_id and res["worst"] == int(np.argmax(res["values"]))
    sidecar = path.with_name(path.name + segmentation.UNCERTAINTY_SIDECAR)
    assert not sidecar.exists()                                  # stored in the prediction: nothing to cache
    del zarr.open_group(str(path), mode="r+").attrs["slice_entropy"]   # as written before the attr existed
    assert segmentation.slice_uncertainty(trained.config, trained.vid) == res and sidecar.exists()

    def recompute(group):
        raise AssertionError("the sidecar should have answered")

    monkeypatch.setattr("ml.infer.slice_uncertainty", recompute)
    assert segmentation.slice_uncertainty(trained.config, trained.vid) == res


def test_one_segment_click_is_one_job_with_objects(trained):
    from app import jobs
    from callbacks import results as cb_results

    vol = {"id": trained.vid, "project_id": trained.pid}
    text, rev, seg_id = cb_results.run_segment(trained.config, vol, False, {"threshold": 0.5, "min_size": 0})
    assert text.startswith(f"Segmented with model {trained.model_id}: ")
    assert "objects (threshold 0.5, min size 0)" in text
    assert seg_id == segmentation.latest_segmentation_id(trained.config, trained.vid)
    rows = [j for j in jobs.list_jobs(trained.config, trained.pid) if j["kind"] == "segment"]
    assert len(rows) == 1 and rows[0]["status"] == "done", rows
    text, _, seg = cb_results.run_segment(trained.config, vol, False, {"threshold": 2.0})   # checked before predicting
    assert "threshold" in text.lower() and seg is no_update
