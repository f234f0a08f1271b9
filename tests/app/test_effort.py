"""Effort metrics: stroke attribution to suggestions, time from the stroke log, per-round sums, CSV."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import numpy as np
import pytest

from app.db import session_scope
from app.models import ALRound, Suggestion
from app.services import effort
from tests.app.envs import make_env


@pytest.fixture
def env(tmp_path):
    env = make_env(tmp_path / "ws", np.zeros((2, 64, 64), np.uint8), name="v", voxel_size=None, extra={})
    with session_scope(env.config) as s:   # one round with two 32-px patches on slice 0 and one on slice 1
        rnd = ALRound(project_id=env.pid, volume_id=env.vid, strategy="entropy", k=3, patch_size=32)
        s.add(rnd)
        s.flush()
        sugs = [Suggestion(round_id=rnd.id, rank=i + 1, z=z, y=0, x=x, size=32, status="todo", n_strokes=0)
                for i, (z, x) in enumerate([(0, 0), (0, 32), (1, 0)])]
        s.add_all(sugs)
        s.flush()
        env.sids = [g.id for g in sugs]
        env.round_id = rnd.id
    return env


def _sug(env, sid) -> Suggestion:
    with session_scope(env.config) as s:
        return s.get(Suggestion, sid)


def test_stroke_updates_touched_suggestions_only(env):
    t0 = datetime(2024, 1, 1, 12, 0, 0)
    with session_scope(env.config) as s:
        hit = effort.record_stroke_effort(s, env.vid, 0, (4, 10, 4, 10), t0)
        both = effort.record_stroke_effort(s, env.vid, 0, (4, 10, 28, 36), t0 + timedelta(seconds=5))
        none = effort.record_stroke_effort(s, env.vid, 0, (40, 50, 40, 50), t0)
        other_volume = effort.record_stroke_effort(s, env.vid + 1, 0, (4, 10, 4, 10), t0)
    assert hit == [env.sids[0]] and sorted(both) == env.sids[:2] and none == [] and other_volume == []
    first = _sug(env, env.sids[0])
    assert first.n_strokes == 2 and first.status == "labeled"
    assert (first.first_stroke_at, first.last_stroke_at) == (t0, t0 + timedelta(seconds=5))
    assert _sug(env, env.sids[2]).status == "todo"
    with session_scope(env.config) as s:
        rnd = s.get(ALRound, env.round_id)
        assert rnd.started_at == t0 and rnd.finished_at is None     # one patch still to do


def test_round_finishes_when_nothing_is_left_to_do(env):
    with session_scope(env.config) as s:
        s.get(Suggestion, env.sids[0]).status = "skipped"
        s.get(Suggestion, env.sids[1]).status = "labeled"
    with session_scope(env.config) as s:
        touched = effort.record_stroke_effort(s, env.vid, 1, (0, 5, 0, 5), 1_700_000_000.0)
        skipped = effort.record_stroke_effort(s, env.vid, 0, (0, 5, 0, 5), 1_700_000_001.0)
    assert touched == [env.sids[2]] and skipped == []        # skipped patches are left alone
    with session_scope(env.config) as s:
        assert s.get(ALRound, env.round_id).finished_at is not None


def test_stroke_costs_cap_idle_gaps():
    strokes = [{"time": t} for t in (100.0, 102.0, 107.0, 500.0)]
    assert effort.stroke_costs(strokes) == [effort.FIRST_STROKE_S, 2.0, 5.0, effort.FIRST_STROKE_S]


def test_patch_and_round_effort_from_the_stroke_log(env):
    def paint(z, y, x):
        env.store.paint(z, np.ones((4, 4), bool), 1, y0=y, x0=x)
        with session_scope(env.config) as s:
            effort.record_stroke_effort(s, env.vid, z, (y, y + 4, x, x + 4))

    paint(0, 2, 2)
    paint(0, 8, 8)
    paint(1, 2, 2)
    patches = {p["suggestion_id"]: p for p in effort.patch_effort(env.config, env.pid)}
    a, b, c = (patches[i] for i in env.sids)
    assert (a["n_strokes"], b["n_strokes"], c["n_strokes"]) == (2, 0, 1)
    assert (a["status"], b["status"], c["status"]) == ("labeled", "todo", "labeled")
    assert a["seconds"] >= effort.FIRST_STROKE_S and b["seconds"] == 0.0
    log = env.store.stroke_log()
    expected = sum(effort.stroke_costs(log))
    assert a["seconds"] + c["seconds"] == pytest.approx(expected, abs=0.2)
    (rnd,) = effort.round_effort(env.config, env.pid)
    assert (rnd["n_patches"], rnd["n_labeled"], rnd["n_skipped"], rnd["n_strokes"]) == (3, 2, 0, 3)
    assert rnd["seconds_per_patch"] == pytest.approx(rnd["seconds"] / 2, abs=0.1)
    vol = effort.volume_effort(env.config, env.vid)
    assert vol["n_strokes"] == 3 and vol["n_pixels"] == 48


def test_effort_csv_has_one_row_per_suggestion(env):
    rows = list(csv.DictReader(io.StringIO(effort.effort_csv(env.config, env.pid))))
    assert [int(r["suggestion_id"]) for r in rows] == env.sids
    assert set(effort.PATCH_CSV_COLUMNS) == set(rows[0])
    assert effort.patch_effort(env.config, None) == [] and effort.round_effort(env.config, None) == []
