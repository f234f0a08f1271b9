"""Training service: versions with history and metrics, warm start, cancel, activation, live history."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from app import jobs
from app.db import session_scope
from app.errors import UserError
from app.models import Job, ModelVersion
from app.services import evaluation, training
from ml.checkpoint import load_checkpoint
from ml.train import TrainConfig
from tests.app.envs import paint_ground_truth, synthetic_env


@pytest.fixture
def env(tmp_path):
    return synthetic_env(tmp_path / "ws", (3, 64, 64), seed=1)


def _label(env, zs=(0, 1, 2)):
    paint_ground_truth(env, zs, 48)


def _weights(model) -> dict:
    """Learned parameters (BatchNorm's running statistics move in every training forward pass, even at lr ~ 0)."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_train_creates_active_version_with_history_and_metrics(env):
    _label(env)
    res = training.train_model(env.config, env.pid, epochs=1, lr=3e-3, steps=12)
    versions = training.list_versions(env.config, env.pid)
    assert [v["id"] for v in versions] == [res["model_id"]] and versions[0]["active"]
    counts = env.store.counts()
    assert versions[0]["n_labeled_pixels"] == counts[1] + counts[2]
    assert versions[0]["n_labeled_patches"] == 3          # 48x48 labels sit in one 128-grid tile per slice
    m = res["metrics"]
    assert m["steps"] == 12 and m["val_iou"] is not None and 0.0 <= m["gt_iou"] <= 1.0
    history = training.version_history(env.config, res["model_id"])
    assert len(history) == 12 and all("loss" in h for h in history)
    model, info = load_checkpoint(versions[0]["path"])
    assert info["meta"]["model_id"] == res["model_id"] and model.config["base"] == 4


def test_continue_from_uses_parent_weights(env):
    _label(env)
    parent = training.train_model(env.config, env.pid, epochs=1, lr=3e-3, steps=6)["model_id"]
    parent_w = _weights(training.load_model(env.config, parent)[0])
    # A vanishing learning rate leaves the warm-started weights where the parent left them ...
    child = training.train_model(env.config, env.pid, parent_id=parent, lr=1e-12, steps=2)["model_id"]
    child_w = _weights(training.load_model(env.config, child)[0])
    assert all(torch.allclose(parent_w[k], child_w[k], atol=1e-6) for k in parent_w)
    # ... while a new model with the same settings starts elsewhere.
    fresh = training.train_model(env.config, env.pid, lr=1e-12, steps=2)["model_id"]
    fresh_w = _weights(training.load_model(env.config, fresh)[0])
    assert not all(torch.allclose(parent_w[k], fresh_w[k], atol=1e-6) for k in parent_w)
    assert next(v for v in training.list_versions(env.config, env.pid) if v["id"] == child)["parent_id"] == parent


def test_cancel_keeps_partial_model_inactive(env):
    _label(env)
    first = training.train_model(env.config, env.pid, steps=4)["model_id"]
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    outcome = jobs.run_job(env.config, "train", env.pid,
                           lambda progress, cancel: training.train_model(env.config, env.pid, steps=50,
                                                                         progress=progress, cancel=cancel),
                           cancel=cancel)
    assert outcome.status == "cancelled"
    with session_scope(env.config) as s:
        assert s.get(Job, outcome.job_id).status == "cancelled"
        rows = s.query(ModelVersion).order_by(ModelVersion.id).all()
        assert [r.active for r in rows] == [True, False] and rows[0].id == first
    partial = training.list_versions(env.config, env.pid)[0]
    assert partial["cancelled"] and 0 < partial["steps"] < 50
    assert [p["id"] for p in training.efficiency_points(env.config, env.pid)] == [first]
    load_checkpoint(partial["path"])                          # the partial checkpoint is complete and loads


def test_live_history_reaches_the_job_row(env):
    _label(env)
    seen = []
    outcome = jobs.run_job(env.config, "train", env.pid,
                           lambda progress, cancel: training.train_model(env.config, env.pid, steps=10,
                                                                         progress=progress, cancel=cancel),
                           set_progress=lambda d, t, info: seen.append(info))
    assert outcome.ok
    info = jobs.get_job(env.config, outcome.job_id)["info"]
    assert info["history"][-1]["step"] == 10
    assert any(h["val_iou"] is not None for h in info["history"])
    assert any("loss" in i for i in seen)


def test_a_new_model_self_trains_its_last_third_on_pseudo_labels(env):
    """The progress names the phases, the version records what it learned from, the history stays one run."""
    _label(env, zs=(0, 2))
    seen = []
    # the tiny test model is never as sure as the defaults ask (p > 0.9 / 0.99): APP_SELF_TRAIN lowers them
    # and min_steps: 40 steps on the labels are far below the 500 a real model needs first
    config = env.config.with_(extra={**env.config.extra, "self_train": {"fg": 0.6, "bg": 0.8, "min_steps": 0}})
    res = training.train_model(config, env.pid, lr=1e-2, steps=60,
                               progress=lambda done, total, info: seen.append((done, info.get("phase"))))
    phases = [p for i, (_, p) in enumerate(seen) if i == 0 or p != seen[i - 1][1]]
    assert phases == ["reading labels", "training", "pseudo-labeling", "self-training", "evaluating"], phases
    assert [d for d, p in seen if p == "self-training"] == list(range(41, 61))
    st = res["metrics"]["self_training"]
    assert st["steps"] == 20 and st["windows"] >= 3 and st["pixels"] == 3 * 64 * 64     # the whole small volume
    assert 0.0 < st["labeled_share"] <= 1.0 and 0.0 <= st["object_share"] <= st["labeled_share"]
    assert [h["step"] for h in training.version_history(env.config, res["model_id"])] == list(range(1, 61))
    assert training.list_versions(config, env.pid)[0]["note"].startswith("self-trained 20 steps on pseudo-labels (")
    assert res["metrics"]["quality_before_self_training"]          # read from the 40-step model (bench.quality v5)
    continued = training.train_model(config, env.pid, parent_id=res["model_id"], lr=1e-2, steps=10)["metrics"]
    assert continued["self_training"]["steps"] == 10 and not continued["quality_before_self_training"]   # none to read


@pytest.mark.parametrize("given, app_train, used", [(None, None, TrainConfig().lr), ("", {"lr": 5e-4}, 5e-4),
                                                     (1e-2, {"lr": 5e-4}, 1e-2)])
def test_no_learning_rate_means_app_train_then_the_one_default(env, given, app_train, used):
    """The page's blank field, the API's null: APP_TRAIN's rate, else ml.train.TrainConfig's (3e-3)."""
    _label(env)
    config = env.config.with_(extra={**env.config.extra, "train": {**env.config.extra.get("train", {}),
                                                                   **(app_train or {})}})
    res = training.train_model(config, env.pid, steps=2, lr=given)
    _, info = load_checkpoint(training.list_versions(config, env.pid)[0]["path"])
    assert TrainConfig().lr == 3e-3 and info["meta"]["train_config"]["lr"] == used, res


@pytest.mark.parametrize("cpu_bf16", [True, False])
def test_a_version_records_the_precision_it_trained_in(env, cpu_bf16):
    """``cpu_bf16`` asks; the version says what ran: bf16 only on a CPU with native bf16 (CUDA: its autocast)."""
    from ml.device import native_cpu_bf16, pick_device

    _label(env)
    config = env.config.with_(extra={**env.config.extra, "train": {**env.config.extra.get("train", {}),
                                                                   "cpu_bf16": cpu_bf16}})
    training.train_model(config, env.pid, steps=2)
    _, info = load_checkpoint(training.list_versions(config, env.pid)[0]["path"])
    recorded = info["meta"]["train_config"]
    assert recorded["cpu_bf16"] is cpu_bf16
    if pick_device(config.device_preference).type == "cpu":
        assert recorded["precision"] == ("bf16" if cpu_bf16 and native_cpu_bf16() else "fp32")
    else:
        assert recorded["precision"] in ("bf16", "fp16")


def test_a_short_new_model_does_not_self_train(env):
    """Fewer steps on the labels than SelfTrainConfig.min_steps: the model is not yet worth learning from."""
    _label(env)
    res = training.train_model(env.config, env.pid, steps=6)
    assert res["metrics"]["self_training"] is None and res["metrics"]["steps"] == 6
    assert res["metrics"]["quality_before_self_training"] is False
    assert "self-trained" not in (training.list_versions(env.config, env.pid)[0]["note"] or "")


def test_strokes_do_not_self_train(env):
    """Labels that do not fill their patches (strokes): the case where a model learned its own mistakes."""
    for z in range(3):
        env.store.paint(z, np.pad(np.ones((1, 40), bool), ((10, 53), (8, 16))), 1)     # a background line
        env.store.paint(z, np.pad(np.ones((1, 30), bool), ((40, 23), (20, 14))), 2)    # a foreground line
    config = env.config.with_(extra={**env.config.extra, "self_train": {"min_steps": 0, "fg": 0.6, "bg": 0.8}})
    res = training.train_model(config, env.pid, steps=6)
    assert res["metrics"]["self_training"] is None and res["metrics"]["steps"] == 6
    dense = env.config.with_(extra={**config.extra, "self_train": {"min_steps": 0, "fg": 0.6, "bg": 0.8,
                                                                   "min_dense": 0.0}})
    assert training.train_model(dense, env.pid, steps=6)["metrics"]["self_training"]["steps"] == 2  # the gate, alone


def test_self_training_can_be_turned_off(env):
    _label(env)
    config = env.config.with_(extra={**env.config.extra, "self_train": {"enabled": False}})
    res = training.train_model(config, env.pid, lr=3e-3, steps=6)
    assert res["metrics"]["self_training"] is None and res["metrics"]["steps"] == 6


def test_activation_switches_the_active_version(env):
    _label(env)
    a = training.train_model(env.config, env.pid, steps=2)["model_id"]
    b = training.train_model(env.config, env.pid, steps=2)["model_id"]
    assert training.active_model_id(env.config, env.pid) == b
    training.activate_model(env.config, env.pid, a)
    assert training.active_model_id(env.config, env.pid) == a
    with pytest.raises(UserError):
        training.activate_model(env.config, env.pid, 999)


def test_refuses_without_two_labeled_classes(env):
    with pytest.raises(UserError, match="Nothing is labeled"):
        training.train_model(env.config, env.pid, steps=2)
    env.store.paint(0, np.ones((8, 8), bool), 2)
    with pytest.raises(UserError, match="Only one class"):
        training.train_model(env.config, env.pid, steps=2)


@pytest.mark.parametrize("epochs, lr", [(0, 1e-3), (5, 0), ("x", 1e-3)])
def test_bad_parameters(env, epochs, lr):
    with pytest.raises(UserError):
        training.train_model(env.config, env.pid, epochs=epochs, lr=lr)


def test_steps_per_epoch_and_history_compaction():
    regions = [SimpleNamespace(image=np.zeros((512, 512)))]
    assert training.steps_for(regions, 3, batch_size=8, crop=128) == 3 * training.MIN_STEPS_PER_EPOCH
    big = [SimpleNamespace(image=np.zeros((4096, 4096)))]
    assert training.steps_for(big, 1, batch_size=8, crop=128) == 128
    hist = [{"step": i, "loss": 1.0, "val_iou": 0.5 if i % 100 == 0 else None} for i in range(1, 2001)]
    small = training.compact_history(hist, 400)
    assert len(small) <= 421 and small[-1]["step"] == 2000
    assert sum(h["val_iou"] is not None for h in small) == 20


def test_eval_slab_is_central_and_bounded():
    zs, ys, xs = evaluation.eval_slab((20, 1024, 1024))
    assert (zs.start, zs.stop) == (8, 11) and (ys.stop - ys.start, xs.stop - xs.start) == (512, 512)
    assert evaluation.eval_slab((1, 64, 64))[0] == slice(0, 1)


def test_validation_without_foreground_is_not_a_zero_iou(env):
    """Held-out labels with background only: validation IoU is None ("n/a"), never 0.0."""
    from ml.train import TrainConfig

    env.store.paint(0, np.ones((24, 24), bool), 1, y0=0, x0=0)        # slice 0: background only
    paint_ground_truth(env, [2], 64)                                    # slice 2: both classes
    regions, _ = training.gather_regions(env.config, env.pid)
    _, val, val_fg = evaluation.split_for_validation(regions, TrainConfig(**env.config.extra["train"]))
    assert val and not val_fg, "setup: the held-out region should be the background-only one"
    outcome = jobs.run_job(env.config, "train", env.pid,
                           lambda progress, cancel: training.train_model(env.config, env.pid, lr=3e-3, steps=10,
                                                                         progress=progress, cancel=cancel))
    m = outcome.result["metrics"]
    assert m["val_iou"] is None and m["val_foreground"] is False and 0.0 <= m["gt_iou"] <= 1.0
    assert training.list_versions(env.config, env.pid)[0]["val_iou"] is None
    stored = training.version_history(env.config, outcome.result["model_id"])
    assert stored and all("val_iou" not in h for h in stored)
    live = jobs.get_job(env.config, outcome.job_id)["info"]["history"]
    assert live[-1]["step"] == 10 and all(h["val_iou"] is None for h in live)


def test_has_foreground_and_missing_reason():
    bg = SimpleNamespace(labels=np.array([[0, 1], [1, 0]], np.uint8))
    fg = SimpleNamespace(labels=np.array([[0, 2]], np.uint8))
    assert not evaluation.has_foreground([bg]) and evaluation.has_foreground([bg, fg])
    assert not evaluation.has_foreground([])
    assert "no foreground" in evaluation.val_iou_missing_reason({"val_foreground": False})
    assert "no validation labels" in evaluation.val_iou_missing_reason({"val_foreground": True})
    assert evaluation.without_val_iou([{"step": 1, "val_iou": 0.0, "val_loss": 0.3}]) == [{"step": 1, "val_loss": 0.3}]
