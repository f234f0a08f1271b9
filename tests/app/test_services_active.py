"""Active-learning service: rounds, ranking, exclusion of labeled/skipped patches, thumbnails, cancel."""
from __future__ import annotations

import numpy as np
import pytest

from app.db import session_scope
from app.errors import UserError
from app.models import ALRound, Suggestion
from app.services import active, factory, projects
from ml.active.strategies import NO_MODEL_FALLBACK
from ml.progress import Cancelled
from tests.app.envs import TINY, add_model_version, synthetic_env


@pytest.fixture
def env(tmp_path):
    return synthetic_env(tmp_path / "ws", (2, 64, 64), seed=3, extra={"model": TINY["model"]})


def _add_active_model(env) -> int:
    """An (untrained) model registered as the active version, so uncertainty strategies run as asked."""
    from ml.checkpoint import save_checkpoint

    classes = projects.get_classes(env.config, env.vid)
    return add_model_version(env, lambda path: save_checkpoint(path, factory.new_model(env.config, 2), classes))


def _suggestions(env, round_id):
    with session_scope(env.config) as s:
        return active.round_rows(s, round_id)


def test_strategy_options_cover_every_strategy_with_descriptions():
    from ml.active.strategies import STRATEGIES

    opts = active.strategy_options()
    assert [o["value"] for o in opts] == list(STRATEGIES)
    assert all(o["description"] for o in opts)


def test_no_model_falls_back_to_a_model_free_strategy_and_says_so(env):
    res = active.suggest_patches(env.config, env.vid, "entropy", k=3, patch_size=32)
    assert res["strategy"] == NO_MODEL_FALLBACK and res["requested"] == "entropy"
    assert "No trained model" in res["note"] and "“entropy” needs one: these are random patches" in res["note"]
    rows = _suggestions(env, res["round_id"])
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert all(r["status"] == "todo" and r["size"] == 32 for r in rows)
    with session_scope(env.config) as s:
        rnd = s.get(ALRound, res["round_id"])
        assert (rnd.k, rnd.patch_size, rnd.model_id, rnd.volume_id) == (3, 32, None, env.vid)


def test_random_without_model_keeps_strategy(env):
    res = active.suggest_patches(env.config, env.vid, "random", k=2, patch_size=32)
    assert res["strategy"] == "random" and res["note"] == "No trained model yet: random patches."
    assert {r["strategy"] for r in _suggestions(env, res["round_id"])} == {"random"}   # the cards say "random pick"


def test_a_random_round_scores_no_candidate_and_an_uncertain_one_does(env):
    """Chance reads no score, so a random round (the first suggestions') skips the pass over the candidates."""
    _add_active_model(env)
    phases = {}
    for strategy in ("random", "entropy"):
        seen = phases[strategy] = []
        res = active.suggest_patches(env.config, env.vid, strategy, k=3, patch_size=32,
                                     progress=lambda done, total, info: seen.append(info.get("phase")))
        assert res["strategy"] == strategy and len(_suggestions(env, res["round_id"])) == 3
    assert "scoring patches" not in phases["random"] and "scoring patches" in phases["entropy"]


def test_active_model_ranks_by_requested_strategy(env):
    mid = _add_active_model(env)
    res = active.suggest_patches(env.config, env.vid, "bald", k=4, patch_size=16)
    assert res["strategy"] == "bald" and res["note"] is None
    scores = [r["score"] for r in _suggestions(env, res["round_id"])]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    with session_scope(env.config) as s:
        assert s.get(ALRound, res["round_id"]).model_id == mid


def test_labeled_and_skipped_patches_are_excluded(env):
    # 2 slices x 2 x 2 grid = 8 candidate patches of 32 px; label one fully, skip one.
    env.store.paint(0, np.ones((32, 32), bool), 1, y0=0, x0=32)
    first = active.suggest_patches(env.config, env.vid, "random", k=8, patch_size=32)
    rows = _suggestions(env, first["round_id"])
    boxes = {(r["z"], r["y"], r["x"]) for r in rows}
    assert len(rows) == 7 and (0, 0, 32) not in boxes
    with session_scope(env.config) as s:
        active.skip_suggestion(s, rows[0]["id"])
        s.get(Suggestion, rows[1]["id"]).status = "labeled"   # e.g. one small stroke, below the 1% rule
    second = active.suggest_patches(env.config, env.vid, "random", k=8, patch_size=32)
    boxes2 = {(r["z"], r["y"], r["x"]) for r in _suggestions(env, second["round_id"])}
    assert len(boxes2) == 5 and not {(r["z"], r["y"], r["x"]) for r in rows[:2]} & boxes2


def test_coreset_keeps_away_from_labeled_patches(env):
    _add_active_model(env)
    env.store.paint(1, np.ones((32, 32), bool), 2, y0=32, x0=0)
    res = active.suggest_patches(env.config, env.vid, "coreset", k=3, patch_size=32)
    rows = _suggestions(env, res["round_id"])
    assert res["strategy"] == "coreset" and len(rows) == 3
    assert (1, 32, 0) not in {(r["z"], r["y"], r["x"]) for r in rows}
    assert all(r["score"] > 0 for r in rows)          # distances to the labeled set's features


def test_thumbnails_are_pngs_and_rebuilt_when_missing(env):
    res = active.suggest_patches(env.config, env.vid, "random", k=2, patch_size=32)
    sid = _suggestions(env, res["round_id"])[0]["id"]
    png = active.thumbnail_png(sid, env.config)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with session_scope(env.config) as s:
        path = s.get(Suggestion, sid).thumb_path
    import os

    os.remove(path)
    assert active.thumbnail_png(sid, env.config) == png


def test_navigation_and_skip(env):
    res = active.suggest_patches(env.config, env.vid, "random", k=1, patch_size=32)
    row = _suggestions(env, res["round_id"])[0]
    with session_scope(env.config) as s:
        nav = active.suggestion_nav(s, row["id"])
        active.skip_suggestion(s, row["id"])
    assert nav["vid"] == env.vid and nav["z"] == row["z"] and nav["outline"]
    assert (nav["y1"] - nav["y0"], nav["x1"] - nav["x0"]) == (32, 32)
    assert _suggestions(env, res["round_id"])[0]["status"] == "skipped"


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "nope"}, "Unknown strategy"),
    ({"patch_size": 512}, "Patch size"),
    ({"k": 0}, "Batch size"),
    ({"k": "x"}, "whole numbers"),
])
def test_bad_input_is_a_user_error(env, kwargs, message):
    args = {"strategy": "random", "k": 2, "patch_size": 32, **kwargs}
    with pytest.raises(UserError, match=message):
        active.suggest_patches(env.config, env.vid, **args)


def test_cancel_leaves_no_round(env):
    with pytest.raises(Cancelled):
        active.suggest_patches(env.config, env.vid, "random", k=2, patch_size=16, cancel=lambda: True)
    with session_scope(env.config) as s:
        assert s.query(ALRound).count() == 0 and s.query(Suggestion).count() == 0
