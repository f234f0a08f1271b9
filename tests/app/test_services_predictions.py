"""The current prediction: the active model's whole-volume one, else its on-demand xy slice preview."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from app.services import predictions, previews, segmentation, training
from app.workspace import Workspace
from tests.app.envs import TINY, add_model_version, paint_ground_truth, synthetic_env


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    env = synthetic_env(tmp_path_factory.mktemp("trained") / "ws", (3, 96, 96), seed=1, extra=TINY)
    paint_ground_truth(env, range(3), 64)
    training.train_model(env.config, env.pid, lr=3e-3, steps=40)
    return Path(training.list_versions(env.config, env.pid)[0]["path"])


@pytest.fixture
def trained(tmp_path, checkpoint):
    env = synthetic_env(tmp_path / "ws", (3, 96, 96), seed=1, extra=TINY)
    env.model_id = add_model_version(env, lambda path: shutil.copyfile(checkpoint, path))
    return env


def test_no_model_no_prediction(tmp_path):
    env = synthetic_env(tmp_path / "ws", (3, 96, 96), seed=1, extra=TINY)
    assert predictions.current(env.config, env.vid) is None
    assert predictions.overlay_plane(env.config, env.vid, "xy", 1) is None


def test_a_new_model_shows_on_the_xy_slice_before_any_segmentation(trained):
    cfg, vid, mid = trained.config, trained.vid, trained.model_id
    assert predictions.current(cfg, vid) is None
    shown = predictions.overlay_plane(cfg, vid, "xy", 1)
    assert shown["prob"].shape == (2, 96, 96) and np.allclose(shown["prob"].sum(0), 1.0, atol=0.01)
    assert (Workspace(cfg.workspace).preview_dir(vid, mid) / "z1.npy").exists()
    assert predictions.overlay_plane(cfg, vid, "xz", 5) is None          # side planes need the whole volume
    segmentation.segment_volume(cfg, vid)
    whole = predictions.overlay_plane(cfg, vid, "xy", 1)
    assert np.abs(whole["prob"] - shown["prob"]).max() <= 1 / 255 + 2e-3    # the preview is that slice, quantised
    assert predictions.overlay_plane(cfg, vid, "xz", 5)["prob"].shape == (2, 3, 96)


def test_a_preview_is_its_slice_in_z_consensus_like_the_whole_volume(trained):
    from ml.z_consensus import smooth_z

    cfg, vid, mid = trained.config, trained.vid, trained.model_id
    alone = [previews.slice_prob(cfg.with_(z_consensus=0.0), vid, mid, z) for z in range(3)]
    stack = np.stack(alone, axis=1)
    assert np.abs(smooth_z(stack, cfg.z_consensus, axis=1) - stack).max() > 0.01     # the slices differ
    for z in range(3):
        shown = predictions.overlay_plane(cfg, vid, "xy", z)["prob"]
        assert np.abs(shown - smooth_z(stack, cfg.z_consensus, axis=1)[:, z]).max() <= 1 / 510 + 1e-6   # quantised


def test_a_newer_model_replaces_the_older_ones_output(trained, checkpoint):
    cfg, vid = trained.config, trained.vid
    segmentation.segment_volume(cfg, vid)
    newer = add_model_version(trained, lambda path: shutil.copyfile(checkpoint, path))
    assert predictions.current(cfg, vid).model_id == trained.model_id    # objects still come from it ...
    assert predictions.overlay_plane(cfg, vid, "xz", 5) is None           # ... but the overlay shows only the new
    assert predictions.overlay_plane(cfg, vid, "xy", 0)["prob"].shape == (2, 96, 96)
    assert (Workspace(cfg.workspace).preview_dir(vid, newer) / "z0.npy").exists()
    assert predictions.overlay_plane(cfg, vid, "xz", 5, model_id=trained.model_id) is not None


def test_previews_are_bounded_per_model_and_dropped_for_older_models(trained, checkpoint, monkeypatch):
    cfg, vid, mid = trained.config, trained.vid, trained.model_id
    monkeypatch.setattr(previews, "MAX_SLICES", 2)
    for z in range(3):
        previews.slice_prob(cfg, vid, mid, z)
    ws = Workspace(cfg.workspace)
    assert len(list(ws.preview_dir(vid, mid).glob("z*.npy"))) == 2
    newer = add_model_version(trained, lambda path: shutil.copyfile(checkpoint, path))
    previews.slice_prob(cfg, vid, newer, 0)
    assert not ws.preview_dir(vid, mid).exists() and ws.preview_dir(vid, newer).exists()
