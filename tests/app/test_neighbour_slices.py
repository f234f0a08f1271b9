"""A project whose models read each slice with its neighbours (APP_MODEL ``z_radius`` 1, 2.5D):
every service that hands a model a volume reads it the way the model does."""
from __future__ import annotations

import numpy as np
import pytest

from app.services import active, labels, live, previews, segmentation, training
from tests.app.envs import TINY, paint_ground_truth, synthetic_env

WIDE = {**TINY, "model": {**TINY["model"], "z_radius": 1},
        "live": {"steps": 4, "first_steps": 6, "crop": 32, "batch_size": 2}}


@pytest.fixture
def env(tmp_path):
    return synthetic_env(tmp_path / "ws", (4, 64, 64), seed=5, extra=WIDE)


def test_train_suggest_preview_segment_and_live_with_a_2_5d_model(env):
    paint_ground_truth(env, [1, 2], 48)
    out = training.train_model(env.config, env.pid, lr=3e-3, steps=10)
    model, _ = training.load_model(env.config, out["model_id"])
    assert model.config["in_channels"] == 3
    assert 0.0 <= out["metrics"]["gt_iou"] <= 1.0 and out["metrics"]["quality"]
    picks = active.suggest_patches(env.config, env.vid, "bald", k=2, patch_size=16)
    assert picks["strategy"] == "bald" and len(active.latest_queue(env.config, env.vid)) == 2
    for z in range(4):
        previews.make(env.config, env.vid, out["model_id"], z)
    prob = previews.slice_prob(env.config, env.vid, out["model_id"], 0)
    assert prob.shape == (2, 64, 64) and np.allclose(prob.sum(0), 1.0, atol=0.02)
    seg = segmentation.segment_and_measure(env.config, env.vid)
    assert seg["summary"]["count"] == len(segmentation.object_rows(env.config, seg["segmentation_id"]))
    assert segmentation.slice_uncertainty(env.config, env.vid) is not None   # every slice predicted
    labels.apply_stroke(env.config, env.vid, 3, "M10,10L20,10", 1, 3)
    update = live.update(env.config, env.vid, 3)
    assert update["outcome"] == "updated" and update["updates"] == 1


def test_the_volume_body_reads_one_slice_and_starts_a_2_5d_model(tmp_path):
    """Pre-training learns from single slices whatever new models read; a 2.5D model widens the body."""
    import torch

    from app import jobs
    from app.services import factory, pretraining
    from ml.model import FIRST_CONV

    pretrain = {"steps": 2, "crop": 32, "batch_size": 2, "block": 8, "warmup_steps": 1}
    env = synthetic_env(tmp_path / "ws", (3, 64, 64), seed=1, extra={**WIDE, "pretrain": pretrain})
    job_id = jobs.create_job(env.config, pretraining.KIND, env.pid, {"volume_id": env.vid})
    assert pretraining.run_detached(env.config, jobs.get_job(env.config, job_id)).ok
    body = torch.load(pretraining.weights_path(env.config, env.vid), weights_only=True)
    assert body["config"]["in_channels"] == 1 and pretraining.status(env.config, env.vid).fits
    model = factory.new_model(env.config, 2)
    assert pretraining.init_new_model(env.config, env.pid, model).startswith("pretrained on syn")
    first = model.state_dict()[FIRST_CONV + ".weight"]
    torch.testing.assert_close(first[:, 1], body["state_dict"][FIRST_CONV + ".weight"][:, 0])
