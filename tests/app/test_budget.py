"""Training budgets: a time budget becomes a step count measured on this machine; estimates in words."""
from __future__ import annotations

import pytest

from app.errors import UserError
from app.services import budget, self_training, training
from callbacks import active as cb_active
from callbacks import training as cb_training
from tests.app.envs import TINY, paint_ground_truth, synthetic_env


@pytest.fixture
def env(tmp_path):
    env = synthetic_env(tmp_path / "ws", (3, 96, 96), seed=1, extra=TINY)
    paint_ground_truth(env, range(3), 64)
    return env


def test_steps_fit_the_budget_within_bounds():
    assert budget.steps_within(40.0, 0.2) == 200
    assert budget.steps_within(40.0, 100.0) == budget.MIN_STEPS
    assert budget.steps_within(1e9, 1e-3) == budget.MAX_STEPS
    assert budget.budget_seconds("epochs") is None and budget.budget_seconds("quick") == budget.BUDGETS["quick"][1]
    with pytest.raises(UserError, match="Unknown training budget"):
        budget.budget_seconds("forever")


@pytest.mark.parametrize("min_steps", [0, None])
def test_a_budget_sets_the_steps_from_the_measured_speed(env, monkeypatch, min_steps):
    """Pseudo-labeling gets its share of the budget only when the run is long enough to self-train
    (``min_steps`` None: the default 500, far above these 60 steps)."""
    monkeypatch.setitem(budget.BUDGETS, "quick", ("quick", 30.0))
    if min_steps is not None:
        env.config = env.config.with_(extra={**env.config.extra, "self_train": {"min_steps": min_steps}})
    measured = []

    def timed(*args):
        measured.append(real(*args))
        return 0.5             # pretend 2 steps per second (the tiny model is much faster)

    real = budget.seconds_per_step
    monkeypatch.setattr(budget, "seconds_per_step", timed)
    res = training.train_model(env.config, env.pid, lr=3e-3, budget="quick")
    share = self_training.settings(env.config).time_share    # pseudo-labeling's part of the budget
    if min_steps is None:
        steps = budget.steps_within(30.0, 0.5)
        assert steps == 60 and res["metrics"]["self_training"] is None
    else:
        steps = budget.steps_within(30.0 * (1 - share), 0.5)
        assert steps == 51 and res["metrics"]["self_training"]["steps"] == round(steps / 3)
    assert res["metrics"]["steps"] == steps and measured and measured[0] > 0   # really timed
    versions = training.list_versions(env.config, env.pid)
    speed = budget.last_speed(versions)
    assert speed == pytest.approx(versions[0]["seconds"] / steps)
    assert budget.estimate_text(speed, "quick").startswith("About 30 s of training: ≈")
    assert "measures this machine's speed" in budget.estimate_text(None, "quick")
    assert "epochs" in budget.estimate_text(speed, "epochs")


def test_the_panel_offers_budgets_and_the_progress_label_says_what_is_left(env):
    values = [o["value"] for o in cb_training.budget_options()]
    assert values == [*budget.BUDGETS, budget.BY_EPOCHS]
    assert "first measures this machine's speed" in cb_training.estimate_view(env.config, env.pid, "quick")
    shown = []
    forward = cb_active.progress_adapter(shown.append)
    forward(5, 10, {"eta_s": 42.4})
    forward(5, 10, {"eta_s": 300})
    forward(10, 10, {})
    forward(7, 10, {"phase": "pseudo-labeling"})
    forward(8, 10, {"phase": "self-training", "eta_s": 12})
    assert shown == [(50, "50% · ~42 s left"), (50, "50% · ~5 min left"), (100, "100%"), (70, "70% · pseudo-labeling"),
                     (80, "80% · self-training · ~12 s left")]
