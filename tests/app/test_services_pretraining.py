"""Pre-training service: settings, the job (done / cancel + resume / yielding the compute lock),
status, auto-start when a volume is added, and new models starting from the weights (provenance)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from app import background, jobs
from app.errors import UserError
from app.services import factory, pretraining, projects, training
from app.services.pretraining import PretrainState
from app.workspace import Workspace
from ml.active.strategies import NO_MODEL_FALLBACK
from ml.anchor import PRETRAINED_ANCHOR
from callbacks import data as cb_data
from layouts import ids
from tests.app.envs import TINY, make_env, paint_ground_truth, synthetic_env

#: a few 32-px crops per step on the TINY U-Net: a run takes about a second on one CPU thread
TINY_PRETRAIN = {"steps": 4, "crop": 32, "batch_size": 2, "block": 8, "warmup_steps": 2}


def _extra(**pretrain) -> dict:
    return {**TINY, "pretrain": {**TINY_PRETRAIN, **pretrain}}


@pytest.fixture
def env(tmp_path):
    return synthetic_env(tmp_path / "ws", (3, 64, 64), seed=1, extra=_extra())


def _run(env, cancel=None, config=None):
    """Launch-free: record the job as app.background.launch would, then run it in this process."""
    config = config or env.config
    job_id = jobs.create_job(config, pretraining.KIND, env.pid, {"volume_id": env.vid})
    return pretraining.run_detached(config, jobs.get_job(config, job_id), cancel=cancel)


def _body_params(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters() if not k.startswith("head.")}


def _file_state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _wait(check, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# --- settings ----------------------------------------------------------------------------------------
def test_settings_default_budget_overrides_and_fit_to_the_volume(env):
    base = pretraining.settings(env.config.with_(extra={}))
    assert base.max_seconds == pretraining.DEFAULT_MAX_SECONDS == 540 and base.steps == 1500
    cfg = pretraining.settings(env.config)
    assert (cfg.steps, cfg.crop, cfg.batch_size) == (4, 32, 2)
    assert pretraining.settings(env.config.with_(extra={"pretrain": {"max_seconds": None}})).max_seconds is None
    fitted = pretraining.settings(env.config.with_(extra={}), (3, 64, 100))
    assert fitted.crop == 64 and fitted.block <= 64                      # 128 px crops do not fit a 64 px volume
    with pytest.raises(UserError, match="too small"):
        pretraining.settings(env.config, (3, 8, 100))


@pytest.mark.parametrize("overrides, match", [({"stepz": 3}, r"APP_PRETRAIN: unknown setting.*'stepz'.*'steps'"),
                                               ({"steps": 0}, r"APP_PRETRAIN: steps=0 .*integer >= 1")])
def test_bad_app_pretrain_is_a_clear_message(env, overrides, match):
    bad = env.config.with_(extra={"pretrain": overrides})
    with pytest.raises(ValueError, match=match):
        pretraining.settings(bad)
    with pytest.raises(ValueError, match=match):
        pretraining.start(bad, env.vid)                    # refused before any job is recorded
    assert jobs.list_jobs(bad, kind="pretrain") == []
    outcome = _run(env, config=bad)
    assert outcome.status == "failed" and "APP_PRETRAIN" in outcome.error
    st = pretraining.status(bad, env.vid)
    assert st.state is PretrainState.FAILED and "APP_PRETRAIN" in st.error


# --- the job ---------------------------------------------------------------------------------------------
def test_pretrain_job_writes_weights_and_status_says_done(env):
    assert pretraining.status(env.config, env.vid).state is PretrainState.NONE
    outcome = _run(env)
    assert outcome.ok, outcome.error
    assert outcome.result["steps"] == 4 and outcome.result["volume_id"] == env.vid
    path = pretraining.weights_path(env.config, env.vid)
    assert path.is_file() and str(path) == outcome.result["path"]
    st = pretraining.status(env.config, env.vid)
    assert (st.state, st.steps, st.fits, st.job_id) == (PretrainState.DONE, 4, True, outcome.job_id)
    job = jobs.get_job(env.config, outcome.job_id)
    assert job["kind"] == "pretrain" and job["progress"] == job["total"] == pretraining.PERMILLE
    assert job["info"]["step"] == 4 and job["params"] == {"volume_id": env.vid}


def test_cancel_keeps_a_snapshot_and_the_next_run_resumes_it(env):
    calls = {"n": 0}

    def cancel_after_three_steps() -> bool:   # checked once before every step
        calls["n"] += 1
        return calls["n"] > 3

    cfg = env.config.with_(extra=_extra(steps=8))
    first = _run(env, cancel=cancel_after_three_steps, config=cfg)
    assert first.status == "cancelled"
    path = pretraining.weights_path(cfg, env.vid)
    from ml.pretrain import partial_path

    assert partial_path(path).is_file() and not path.exists()
    st = pretraining.status(cfg, env.vid)
    assert (st.state, st.steps) == (PretrainState.PARTIAL, 3)
    assert pretraining.pretrained_for(cfg, env.pid, factory.architecture(cfg)) is None   # unfinished: unused

    seen: list[int] = []
    job_id = jobs.create_job(cfg, pretraining.KIND, env.pid, {"volume_id": env.vid})
    second = jobs.run_job(cfg, pretraining.KIND, env.pid,
                          lambda progress, cancel: pretraining.pretrain_volume(
                              cfg, env.vid, lambda d, t, info: (seen.append(info["step"]) if "step" in info else None),
                              cancel, job_id=job_id),
                          compute=False, job_id=job_id)
    assert second.ok and second.result["steps"] == 8
    assert seen[0] == 4 and seen[-1] == 8                     # went on from the snapshot's step 3
    assert not partial_path(path).exists() and pretraining.status(cfg, env.vid).steps == 8


def test_pretraining_yields_the_compute_lock_to_a_waiting_job(env, monkeypatch):
    monkeypatch.setattr(pretraining, "YIELD_AFTER_S", 0.3)
    monkeypatch.setattr(pretraining, "POLL_S", 0.2)
    monkeypatch.setattr(jobs, "CANCEL_POLL_S", 0.1)
    cfg = env.config.with_(extra=_extra(steps=100_000, max_seconds=120))
    job_id = jobs.create_job(cfg, pretraining.KIND, env.pid, {"volume_id": env.vid})
    runner = threading.Thread(target=pretraining.run_detached, args=(cfg, jobs.get_job(cfg, job_id)), daemon=True)
    runner.start()
    try:
        _wait(lambda: (jobs.get_job(cfg, job_id)["info"].get("step") or 0) >= 2, 60, "pre-training to run")
        started = time.monotonic()
        user = jobs.run_job(cfg, "train", env.pid, lambda progress, cancel: "ran with the lock")   # compute=True
        assert user.ok and user.result == "ran with the lock"
        assert time.monotonic() - started < 30, "the user's job waited for the whole pre-training"
        paused_at = jobs.get_job(cfg, job_id)["info"]["step"]
        _wait(lambda: (jobs.get_job(cfg, job_id)["info"].get("step") or 0) > paused_at + 1, 60,
              "pre-training to resume after the user's job")
        assert jobs.get_job(cfg, job_id)["status"] == "running"
    finally:
        jobs.request_cancel(cfg, job_id)
        runner.join(60)
    assert jobs.get_job(cfg, job_id)["status"] == "cancelled"
    assert pretraining.status(cfg, env.vid).state is PretrainState.PARTIAL


def test_start_returns_the_active_job_instead_of_a_second_one(env, monkeypatch):
    job_id = jobs.create_job(env.config, pretraining.KIND, env.pid, {"volume_id": env.vid})   # queued, ours
    monkeypatch.setattr(background, "launch", lambda *a, **k: pytest.fail("launched a second job"))
    assert pretraining.start(env.config, env.vid) == job_id
    st = pretraining.status(env.config, env.vid)
    assert st.state is PretrainState.RUNNING and st.job_id == job_id and st.active


# --- starting by itself ------------------------------------------------------------------------------------
def test_adding_a_volume_starts_pretraining_in_the_background(tmp_path):
    pytest.importorskip("ml.io.readers")
    import tifffile

    from ml.synthetic import make_em_volume

    env = make_env(tmp_path / "ws", np.zeros((2, 40, 40), np.uint8), extra=_extra())
    cfg = env.config.with_(torch_threads=1, data_roots=(tmp_path / "data",))
    (tmp_path / "data").mkdir()
    raw, _ = make_em_volume((3, 48, 48), seed=2)
    tifffile.imwrite(tmp_path / "data" / "new.tif", raw, imagej=True, metadata={"axes": "ZYX"})

    _, sel, msg, _, color = cb_data.volumes_view(cfg, ids.VOLUME_ADD, env.pid, "new.tif", None, None, None, None,
                                                 auto_pretrain=True)
    assert color == "success" and "Pre-training it in the background (job" in msg, msg
    st = pretraining.status(cfg, sel)
    assert st.state in (PretrainState.RUNNING, PretrainState.DONE)
    job = jobs.get_job(cfg, st.job_id)
    assert job["kind"] == "pretrain" and job["params"] == {"volume_id": sel}
    done = _wait(lambda: jobs.get_job(cfg, st.job_id)["status"] not in jobs.ACTIVE_STATES and
                 jobs.get_job(cfg, st.job_id), 150, "the launched pre-training process to finish")
    log = Workspace(cfg.workspace).job_log_path(st.job_id).read_text()
    assert done["status"] == "done", f"{done}\n{log}"
    assert pretraining.status(cfg, sel).state is PretrainState.DONE

    *_, msg, _, _ = cb_data.volumes_view(cfg, ids.VOLUME_ADD, env.pid, "new.tif", None, None, None, None,
                                         auto_pretrain=False)
    assert "Pre-training" not in msg
    assert len(jobs.list_jobs(cfg, kind="pretrain")) == 1


def test_a_new_demo_volume_is_pretrained_when_asked(tmp_path, monkeypatch):
    from app.config import Config
    from app.demo import ensure_demo

    started = []
    monkeypatch.setattr(pretraining, "start", lambda config, vid: started.append(vid) or 1)
    cfg = Config(workspace=tmp_path / "ws", demo="synthetic", demo_shape=(2, 64, 64))
    proj = ensure_demo(cfg, "synthetic", pretrain=True)
    ensure_demo(cfg, "synthetic", pretrain=True)           # the demo exists: nothing new to pre-train
    assert started == [projects.list_volumes(cfg, proj["id"])[0]["id"]]


def test_a_volume_too_small_says_so_instead_of_starting(tmp_path):
    tiny = make_env(tmp_path / "ws2", np.zeros((2, 8, 40), np.uint8), extra=_extra())
    text = cb_data.pretrain_started(tiny.config, tiny.vid, True)
    assert text.startswith(" Pre-training did not start: The volume is 8 x 40 px: too small"), text
    assert cb_data.pretrain_started(tiny.config, tiny.vid, False) == ""
    st = pretraining.status(tiny.config, tiny.vid)               # said before anyone presses the button
    assert st.state is PretrainState.FAILED and st.job_id is None and "too small" in st.error
    assert cb_data.pretrain_text(st)[0].startswith("The volume is 8 x 40 px")


# --- new models start from the weights ------------------------------------------------------------------
def test_new_model_loads_the_pretrained_body(env):
    assert _run(env).ok
    path = pretraining.weights_path(env.config, env.vid)
    found = pretraining.pretrained_for(env.config, env.pid, {"base": 4, "depth": 2, "n_classes": 7})
    assert found is not None and found[0] == path and found[1]["volume"]["name"] == "syn"
    stored = _file_state(path)
    model = factory.new_model(env.config, 3)
    assert pretraining.init_new_model(env.config, env.pid, model) == "pretrained on syn (4 steps)"
    params = _body_params(model)
    assert params and all(torch.equal(params[k], stored[k]) for k in params)

    paint_ground_truth(env, (0, 1, 2), 48)
    res = training.train_model(env.config, env.pid, lr=1e-12, steps=2)    # a vanishing lr keeps the start weights
    assert res["metrics"]["started_from"] == "pretrained on syn (4 steps)"
    trained = _body_params(training.load_model(env.config, res["model_id"])[0])
    assert all(torch.allclose(trained[k], stored[k], atol=1e-6) for k in trained)
    child = training.train_model(env.config, env.pid, parent_id=res["model_id"], lr=1e-12, steps=2)
    versions = {v["id"]: v["started_from"] for v in training.list_versions(env.config, env.pid)}
    assert versions == {res["model_id"]: "pretrained on syn (4 steps)", child["model_id"]: f"v{res['model_id']}"}
    assert {m: _anchor(env.config, m) for m in versions} == {res["model_id"]: 0.0, child["model_id"]: 0.0}
    selfed = env.config.with_(extra={**env.config.extra, "self_train": {"min_steps": 0}})   # 2 steps self-train now
    pulled = training.train_model(selfed, env.pid, lr=1e-12, steps=2)
    assert pulled["metrics"]["self_training"] and _anchor(env.config, pulled["model_id"]) == PRETRAINED_ANCHOR
    own = training.train_model(selfed, env.pid, lr=1e-12, steps=2, train_overrides={"anchor": 1.5})
    assert _anchor(env.config, own["model_id"]) == 1.5                                  # APP_TRAIN's wins


def _anchor(config, model_id: int) -> float:
    """The pull toward the start a stored version trained with (ml.anchor.start_anchor)."""
    return training.load_model(config, model_id)[1]["meta"]["train_config"]["anchor"]


def test_model_free_suggestions_use_the_pretrained_features(env):
    from app.services import active

    before = active.suggest_patches(env.config, env.vid, "kmeans", k=3, patch_size=32)
    assert "untrained network" in before["note"]
    assert _run(env).ok
    after = active.suggest_patches(env.config, env.vid, "kmeans", k=3, patch_size=32)
    assert after["strategy"] == "kmeans" and "pretrained on syn (4 steps)" in after["note"]
    fallback = active.suggest_patches(env.config, env.vid, "balanced", k=3, patch_size=32)
    assert fallback["strategy"] == NO_MODEL_FALLBACK == "random" and "network" not in fallback["note"]


def test_other_architecture_falls_back_to_scratch(env):
    assert _run(env).ok
    bigger = env.config.with_(extra={**_extra(), "model": {"base": 8, "depth": 2}})
    assert pretraining.pretrained_for(bigger, env.pid, factory.architecture(bigger)) is None
    st = pretraining.status(bigger, env.vid)
    assert st.state is PretrainState.DONE and st.fits is False
    assert "another model size" in cb_data.pretrain_text(st)[0]
    paint_ground_truth(env, (0, 1, 2), 48)
    res = training.train_model(bigger, env.pid, steps=2)
    assert res["metrics"]["started_from"] == "scratch"
    assert training.list_versions(bigger, env.pid)[0]["started_from"] == "scratch"
    assert _anchor(bigger, res["model_id"]) == 0.0


def test_versions_from_before_pretraining_read_scratch_or_parent(env):
    from tests.app.envs import add_model_version

    old = add_model_version(env, lambda p: None)
    assert training.list_versions(env.config, env.pid)[0]["started_from"] == "scratch"
    assert training.started_from(type("Row", (), {"parent_id": old})(), {}) == f"v{old}"


# --- the Data panel's line --------------------------------------------------------------------------------
def test_pretrain_line_and_button_follow_the_state(env):
    assert cb_data.pretrain_view(env.config, None, None)[1:] == ("Pre-train", True)
    line, label, disabled = cb_data.pretrain_view(env.config, ids.VOLUME_SELECT, env.vid)
    assert "not yet" in str(line) and (label, disabled) == ("Pre-train", False)
    S = pretraining.PretrainStatus
    assert cb_data.pretrain_text(S(1, PretrainState.RUNNING, job_id=7, percent=42.4, phase="pre-training")) == \
        ("pre-training, 42% (job 7)", "primary", "Pre-train")
    assert cb_data.pretrain_text(S(1, PretrainState.PARTIAL, steps=120))[::2] == ("stopped at 120 steps, resumable",
                                                                                 "Resume")
    assert cb_data.pretrain_text(S(1, PretrainState.DONE, steps=1, fits=True))[0].startswith("done (1 step)")
    assert cb_data.pretrain_text(S(1, PretrainState.FAILED, job_id=3, error="boom"))[0] == "failed: boom"
    assert _run(env).ok
    line, label, disabled = cb_data.pretrain_view(env.config, ids.JOBS_POLL, env.vid)
    assert "done (4 steps)" in str(line) and (label, disabled) == ("Pre-train again", False)
