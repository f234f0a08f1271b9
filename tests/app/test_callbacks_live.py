"""Live panel logic: an update as a job, its errors in the status line, switch off, keep, discard."""
from __future__ import annotations

import numpy as np
import pytest
from dash import no_update

from app import jobs
from app.services import labels, live, training
from callbacks import live as cb
from layouts import live as view
from tests.app.envs import TINY, synthetic_env

LIVE = {"steps": 3, "first_steps": 4, "crop": 32, "batch_size": 2}


@pytest.fixture
def env(tmp_path):
    return synthetic_env(tmp_path / "ws", (3, 64, 64), seed=2, extra={**TINY, "live": LIVE})


def _paint(env, fg: bool, z: int = 1) -> None:
    ys, xs = np.nonzero((env.gt[z] > 0) == fg)
    r, c = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    labels.apply_stroke(env.config, env.vid, z, f"M{max(0, c - 2)},{r}L{min(63, c + 2)},{r}", 2 if fg else 1, 3)


def _go(env, z: int = 1) -> dict:
    return {"n": 1, "vid": env.vid, "z": z, "view": [-0.5, 63.5, 63.5, -0.5]}


def test_an_update_runs_as_a_job_and_its_error_keeps_the_overlay(env):
    rev, text, disabled = cb.run_update(env.config, env.pid, _go(env), True)
    assert rev is no_update and "Nothing is labeled yet" in text and "still shows the last update" in text
    assert disabled is True
    failed = jobs.list_jobs(env.config, env.pid, kind=jobs.LIVE_KIND)
    assert [j["status"] for j in failed] == ["failed"]
    _paint(env, True)
    _paint(env, False)
    rev, text, disabled = cb.run_update(env.config, env.pid, _go(env), True)
    assert isinstance(rev, int) and "Live draft: 1 update" in text and disabled is False
    assert live.view_prediction(env.config, env.vid, 1)["rev"] == rev
    # the jobs list leaves out finished live updates (one per stroke) but shows the failed one
    shown = jobs.list_jobs(env.config, env.pid, quiet_kinds=(jobs.LIVE_KIND,))
    assert [j["status"] for j in shown] == ["failed"]


def test_nothing_runs_when_live_is_off_or_nothing_was_asked(env):
    assert cb.run_update(env.config, env.pid, _go(env), False) == (no_update,) * 3
    assert cb.run_update(env.config, env.pid, None, True) == (no_update,) * 3
    assert jobs.list_jobs(env.config, env.pid) == []


def test_switching_off_stops_a_running_update_and_hides_the_live_view(env):
    job = jobs.create_job(env.config, jobs.LIVE_KIND, env.pid)
    jobs.set_state(env.config, job, "running")
    rev, text, _ = cb.switched(env.config, env.pid, False)
    assert rev is None and text == view.OFF_TEXT and jobs.cancel_requested(env.config, job)
    rev, text, disabled = cb.switched(env.config, env.pid, True)
    assert rev is no_update and "Live: on" in text and disabled is True


def test_keep_and_discard(env):
    assert cb.discard_draft(env.config, env.pid)[1] == "Live: there is no draft to discard."
    _paint(env, True)
    _paint(env, False)
    cb.run_update(env.config, env.pid, _go(env), True)
    text, disabled, marker = cb.keep_draft(env.config, env.pid)
    mid = training.active_model_id(env.config, env.pid)
    assert f"Kept the draft as model v{mid} (active)" in text and disabled is True and isinstance(marker, int)
    _paint(env, False, z=2)
    cb.run_update(env.config, env.pid, _go(env, 2), True)
    rev, text, disabled = cb.discard_draft(env.config, env.pid)
    assert rev is None and "discarded" in text and live.draft_info(env.config, env.pid) is None
    assert training.active_model_id(env.config, env.pid) == mid          # discarding keeps the versions
