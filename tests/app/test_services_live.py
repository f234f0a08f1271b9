"""Live service: drafts learn the newest strokes, predict the view, supersede, keep and discard."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.errors import UserError
from app.services import labels, live, training
from tests.app.envs import TINY, synthetic_env

LIVE = {"steps": 4, "first_steps": 6, "crop": 32, "batch_size": 2}


@pytest.fixture
def env(tmp_path):
    return synthetic_env(tmp_path / "ws", (3, 64, 64), seed=1, extra={**TINY, "live": LIVE})


def _stroke_on(env, z: int, fg: bool) -> None:
    """A short horizontal stroke over the object (fg) or the background (not fg) of slice z."""
    ys, xs = np.nonzero((env.gt[z] > 0) == fg)
    r, c = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    path = f"M{max(0, c - 3)},{r}L{min(63, c + 3)},{r}"
    labels.apply_stroke(env.config, env.vid, z, path, 2 if fg else 1, 3)


def test_no_labels_and_one_class_get_clear_messages(env):
    with pytest.raises(UserError, match="Nothing is labeled"):
        live.update(env.config, env.vid, 1)
    _stroke_on(env, 1, fg=True)
    with pytest.raises(UserError, match="Only one class"):
        live.update(env.config, env.vid, 1)
    assert live.draft_info(env.config, env.pid) is None and live.view_prediction(env.config, env.vid, 1) is None


def test_update_learns_new_strokes_and_predicts_the_view(env):
    _stroke_on(env, 1, fg=True)
    _stroke_on(env, 1, fg=False)
    out = live.update(env.config, env.vid, 1, view=[9.5, 40.5, 50.5, 19.5])
    assert out["outcome"] == "updated" and out["steps"] == 6 and out["updates"] == 1      # a new model's first budget
    y0, y1, x0, x1 = out["box"]
    assert (y0, x0) == (0, 0) and y1 <= 64 and x1 <= 64        # rows 20..50, cols 10..40 plus the margin, clipped
    view = live.view_prediction(env.config, env.vid, 1)
    assert view["prob"].shape == (2, y1 - y0, x1 - x0) and view["rev"] == out["rev"]
    assert live.view_prediction(env.config, env.vid, 0) is None                        # another slice: none
    again = live.update(env.config, env.vid, 1)                                         # nothing new: predict only
    assert again["steps"] == 6 and again["updates"] == 1 and "fine_tune_s" not in again["timings"]
    _stroke_on(env, 2, fg=True)
    third = live.update(env.config, env.vid, 2)
    assert third["steps"] == 10 and third["updates"] == 2
    info = live.draft_info(env.config, env.pid)
    assert info["event_id"] == labels.newest_event_id(env.config, env.pid) and info["started_from"] == "scratch"


def test_a_newer_stroke_supersedes_a_running_update_and_keeps_its_steps(env):
    env.config.extra["live"] = {**LIVE, "steps": 100_000, "first_steps": 100_000}
    _stroke_on(env, 1, fg=True)
    _stroke_on(env, 1, fg=False)
    calls = []

    def paint_while_training() -> bool:          # the user paints again while the draft trains
        calls.append(1)
        if len(calls) == 3:
            _stroke_on(env, 2, fg=False)
        return False

    out = live.update(env.config, env.vid, 1, cancel=paint_while_training)
    assert out["outcome"] == "superseded" and 0 < out["steps"] < 100_000
    info = live.draft_info(env.config, env.pid)
    assert info["steps"] == out["steps"] and info["updates"] == 0
    assert info["event_id"] < labels.newest_event_id(env.config, env.pid)               # the next update learns it
    assert live.view_prediction(env.config, env.vid, 1) is None                        # nothing stale was shown


def test_keep_makes_an_active_version_and_discard_forgets(env):
    _stroke_on(env, 1, fg=True)
    _stroke_on(env, 1, fg=False)
    live.update(env.config, env.vid, 1)
    kept = live.keep(env.config, env.pid)
    versions = training.list_versions(env.config, env.pid)
    assert [v["id"] for v in versions] == [kept["model_id"]] and versions[0]["active"]
    assert versions[0]["started_from"] == "live draft from scratch" and versions[0]["steps"] == 6
    assert versions[0]["n_labeled_pixels"] > 0 and 0.0 <= kept["metrics"]["gt_iou"] <= 1.0
    assert live.draft_info(env.config, env.pid) is None and live.view_prediction(env.config, env.vid, 1) is not None
    out = live.update(env.config, env.vid, 1)                   # the next draft starts from the kept version ...
    assert out["started_from"] == f"v{kept['model_id']}" and out["steps"] == 0       # ... which knows these labels
    _stroke_on(env, 2, fg=False)
    assert live.update(env.config, env.vid, 2)["steps"] == 4
    assert live.discard(env.config, env.pid) and not live.discard(env.config, env.pid)
    assert live.view_prediction(env.config, env.vid, 2) is None
    with pytest.raises(UserError, match="no live draft"):
        live.keep(env.config, env.pid)


def test_bad_live_settings_are_a_user_error(env):
    env.config.extra["live"] = {"stepz": 3}
    with pytest.raises(UserError, match="APP_LIVE"):
        live.settings(env.config)


def test_overlay_route_shows_the_live_view_and_falls_back(env):
    from app.server import create_app

    _stroke_on(env, 1, fg=True)
    _stroke_on(env, 1, fg=False)
    out = live.update(env.config, env.vid, 1, view=[-0.5, 15.5, 15.5, -0.5])   # + 32 px margin
    client = create_app(env.config).server.test_client()
    for kind in ("prediction", "uncertainty"):
        resp = client.get(f"/overlay/{env.vid}/{kind}/xy/1.png?rev=0&live={out['rev']}")
        assert resp.status_code == 200
        rgba = np.asarray(Image.open(io.BytesIO(resp.data)).convert("RGBA"))
        y0, y1, x0, x1 = out["box"]
        assert (y1, x1) == (48, 48) and rgba.shape == (64, 64, 4)
        assert rgba[y1:, :, 3].max() == 0 and rgba[:, x1:, 3].max() == 0
        if kind == "uncertainty":
            assert rgba[:y1, :x1, 3].max() > 0
    plain = client.get(f"/overlay/{env.vid}/prediction/xy/1.png?rev=0")      # no live: no prediction yet
    other = client.get(f"/overlay/{env.vid}/prediction/xy/0.png?rev=0&live={out['rev']}")
    assert plain.data == other.data and len(plain.data) < 100


def test_an_active_model_with_other_classes_is_not_the_draft_base(env):
    import torch

    from ml.checkpoint import save_checkpoint
    from ml.model import UNet2D
    from tests.app.envs import add_model_version

    torch.manual_seed(0)
    other = UNet2D(n_classes=3, base=4, depth=2)
    mid = add_model_version(env, lambda p: save_checkpoint(p, other, ["bg", "a", "b"]))
    assert training.active_model_id(env.config, env.pid) == mid
    _stroke_on(env, 1, fg=True)
    _stroke_on(env, 1, fg=False)
    out = live.update(env.config, env.vid, 1)
    assert out["outcome"] == "updated" and out["started_from"] == "scratch" and out["steps"] == 6
