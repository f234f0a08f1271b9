"""The guided path: steps are done by what exists, the next one is highlighted with what to do."""
from __future__ import annotations


import pytest
from dash import no_update

from app.services import guide, labels, segmentation, training
from callbacks import active as cb_active
from callbacks import guide as cb_guide
from layouts import guide as view
from tests.app.envs import TINY, paint_ground_truth, synthetic_env


@pytest.fixture
def env(tmp_path):
    return synthetic_env(tmp_path / "ws", (3, 96, 96), seed=1, extra=TINY)


def _text(component) -> str:
    return str(component)


def test_steps_follow_the_project_from_empty_to_segmented(env, tmp_path):
    cfg, pid, vid = env.config, env.pid, env.vid
    assert guide.steps_done(cfg, None, None) == dict.fromkeys(guide.STEPS, False)
    done = guide.steps_done(cfg, pid, vid)
    assert done["data"] and not any(done[k] for k in guide.STEPS[1:])
    assert view.next_step(done) == "paint"
    labels.apply_stroke(cfg, vid, 1, "M10,10L30,10", 1, 3)            # one class only: not enough to train
    assert not guide.steps_done(cfg, pid, vid)["paint"]
    paint_ground_truth(env, range(3), 64)
    assert guide.steps_done(cfg, pid, vid)["paint"] and view.next_step(guide.steps_done(cfg, pid, vid)) == "train"
    training.train_model(cfg, pid, lr=3e-3, steps=10)
    done = guide.steps_done(cfg, pid, vid)
    assert done["train"] and view.next_step(done) == "review"
    segmentation.segment_and_measure(cfg, vid)
    done = guide.steps_done(cfg, pid, vid)
    assert done["segment"] and not done["review"] and view.next_step(done) == "review"   # skipped steps stay open


def test_the_bar_marks_done_steps_and_names_the_next_action():
    done = {"data": True, "paint": True}
    bar = view.steps_bar(done)
    text = _text(bar)
    assert "\u2713 Data" in text and "\u2713 Paint" in text and "3 Train" in text
    assert text.count("guide-step guide-next") == 1 and "Training tab" in text
    assert view.ALL_DONE in _text(view.steps_bar(dict.fromkeys(guide.STEPS, True)))


def test_a_step_badge_opens_its_panel():
    assert cb_guide.tab_for({"type": "guide-step", "index": "segment"}, [0, 0, 0, 0, 1, 0]) == "results"
    assert cb_guide.tab_for({"type": "guide-step", "index": "paint"}, [0, 1, 0, 0, 0, 0]) is no_update
    assert cb_guide.tab_for({"type": "guide-step", "index": "train"}, [0] * 6) is no_update   # a re-render


def test_the_suggestion_hint_waits_for_labels(env):
    vol = {"id": env.vid, "project_id": env.pid}
    assert "First paint" in _text(cb_active.queue_view(env.config, vol)[0])
    labels.apply_stroke(env.config, env.vid, 1, "M10,10L30,10", 1, 3)
    assert "press “Suggest patches”" in _text(cb_active.queue_view(env.config, vol)[0])
    assert "Add a volume" in _text(cb_active.queue_view(env.config, None)[0])
