"""``bench.al_pool.start_dependence``: does a strategy's gain depend on how good its first model is?"""
from __future__ import annotations

import pytest

from bench.al_pool import start_dependence


def test_gains_that_shrink_as_first_models_improve_correlate_negatively():
    initial = {"0": 0.6, "1": 0.7, "2": 0.8, "3": 0.75}
    assert start_dependence(initial, {"0": 0.10, "1": 0.05, "2": 0.0, "3": 0.02}) < -0.9
    assert start_dependence(initial, {"0": 0.0, "1": 0.05, "2": 0.10, "3": 0.08}) > 0.9


def test_only_seeds_both_sides_hold_count_and_too_few_or_flat_give_none():
    initial = {"0": 0.6, "1": 0.7, "2": 0.8}
    assert start_dependence(initial, {"0": 0.1, "1": 0.05, "9": 1.0}) is None          # two shared seeds
    assert start_dependence(initial, {"0": 0.0, "1": 0.0, "2": 0.0}) is None            # random against itself
    assert start_dependence(initial, {"0": 0.1, "1": 0.0, "2": 0.1}) == pytest.approx(0.0, abs=1e-12)
