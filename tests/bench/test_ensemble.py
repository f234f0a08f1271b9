"""``bench.ensemble``: two trainings of the same draws, averaged, on a toy volume."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from tests.bench.tiny_runs import bench, tiny_volume


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs of the same draws (seeds 0, 1) with training seeds +0 and +1000, and one of seed 0 alone."""
    tmp = tmp_path_factory.mktemp("ensemble")
    paths = tiny_volume(tmp)
    made = {}
    arms = (("a", ["--seeds", "2"]), ("b", ["--seeds", "2", "--train-seed", "1000"]), ("one", ["--seeds", "1"]))
    for name, extra in arms:
        r = bench("bench.initial_steps", *paths, "--out", str(tmp / name), "--tiny", "--steps", "6", "--base", "4",
                  "--split", "test", *extra)
        assert r.returncode == 0, r.stderr
        made[name] = tmp / name
    return paths, made


def test_ensemble_scores_members_as_their_runs_did(runs):
    paths, made = runs
    r = bench("bench.ensemble", *paths, "--runs", f"{made['a']},{made['b']}", "--tiny")
    assert r.returncode == 0, r.stderr
    out = json.loads((made["a"] / "ensemble_steps6.json").read_text())
    for i, name in enumerate("ab"):
        trained = {m["seed"]: m["iou"] for m in json.loads((made[name] / "summary.json").read_text())["models"]}
        np.testing.assert_allclose([row[i] for row in out["members"]], [trained[0], trained[1]], atol=1e-9)
    assert all(0 <= x <= 1 for x in out["ensemble"])
    rows = re.search(r"^\| ensemble of 2 \(mean probability\) \| ([\d. ]+) \|", r.stdout, re.M)[1].split()
    assert rows == [f"{x:.3f}" for x in out["ensemble"]]
    diff = np.subtract(*np.array(out["members"]).T)                   # two trainings: sd = rms difference / sqrt 2
    assert out["training_sd"] == pytest.approx(np.sqrt(np.mean(diff ** 2) / 2)) and out["training_sd"] > 0
    assert out["one_training_sd"] ** 2 == pytest.approx(out["training_sd"] ** 2 + out["draw_sd"] ** 2)
    a = torch.load(made["a"] / "steps6" / "initial_seed0.pt", weights_only=True)
    b = torch.load(made["b"] / "steps6" / "initial_seed0.pt", weights_only=True)
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())   # another training seed


def test_an_ensemble_of_one_model_with_itself_is_that_model(runs):
    paths, made = runs
    r = bench("bench.ensemble", *paths, "--runs", f"{made['a']},{made['a']}", "--tiny", "--soup")
    assert r.returncode == 0, r.stderr
    out = json.loads((made["a"] / "ensemble_steps6.json").read_text())
    assert out["ensemble"] == out["soup"] == [row[0] for row in out["members"]]
    same = [row[0] for row in out["members"]]
    assert out["training_sd"] == 0.0 and out["draw_sd"] == pytest.approx(np.std(same, ddof=1))   # all spread is draws
    assert re.search(r"^\| weights averaged \(one model\) \| [\d. ]+ \|", r.stdout, re.M)


def test_ensemble_refuses_runs_that_are_not_one_draw(runs, tmp_path):
    paths, made = runs
    r = bench("bench.ensemble", *paths, "--runs", f"{made['a']},{made['one']}", "--tiny")
    assert r.returncode == 2 and "different seeds" in r.stderr and "Traceback" not in r.stderr, r.stderr
    other = tmp_path / "other"
    other.mkdir()
    summary = json.loads((made["b"] / "summary.json").read_text())
    (other / "summary.json").write_text(json.dumps({**summary, "base": 8}))
    r = bench("bench.ensemble", *paths, "--runs", f"{made['a']},{other}", "--tiny")
    assert r.returncode == 2 and "differs from" in r.stderr and "base" in r.stderr, r.stderr
    (other / "summary.json").write_text(json.dumps({**summary, "lr": 1e-3}))      # another recipe, same draws
    r = bench("bench.ensemble", *paths, "--runs", f"{made['a']},{other}", "--tiny")
    assert r.returncode == 2 and "differs from" in r.stderr and "lr" in r.stderr, r.stderr
    (other / "summary.json").write_text(json.dumps({**summary, "head_steps": 50}))  # a linear probe first
    r = bench("bench.ensemble", *paths, "--runs", f"{made['a']},{other}", "--tiny")
    assert r.returncode == 2 and "differs from" in r.stderr and "head_steps" in r.stderr, r.stderr
    (other / "summary.json").write_text(json.dumps({**summary, "self_train_rounds": 2}))  # pseudo-labels relabeled
    r = bench("bench.ensemble", *paths, "--runs", f"{made['a']},{other}", "--tiny")
    assert r.returncode == 2 and "differs from" in r.stderr and "self_train_rounds" in r.stderr, r.stderr
    r = bench("bench.ensemble", *paths, "--runs", str(made["a"]), "--tiny")
    assert r.returncode == 2 and "at least two" in r.stderr
