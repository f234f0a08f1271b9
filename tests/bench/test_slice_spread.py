"""``bench.slice_spread``: re-scoring saved first models slice by slice on a toy volume."""
from __future__ import annotations

import json
import re
from math import comb

import numpy as np

from bench.al_protocol import eval_slices
from bench.al_scores import count_scores
from bench.slice_spread import spread, subsets
from tests.bench.tiny_runs import bench, tiny_volume

def test_spread_scores_every_subset_from_summed_counts():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 50, size=(3, 6, 4))             # 3 seeds, 6 slices, (tp, fp, fn, tn)
    r = spread(counts, 2)
    assert r["subsets"] == comb(6, 2) and r["eval_z"] == eval_slices(6, 2) == [2, 3]
    assert r["all"] == [count_scores(c.sum(0))["iou"] for c in counts]
    assert r["protocol"] == [count_scores(c[[2, 3]].sum(0))["iou"] for c in counts]
    worst = min(min(count_scores(c[[a, b]].sum(0))["iou"] for c in counts) for a in range(6) for b in range(a + 1, 6))
    assert r["low_min"] == worst and r["low_min"] <= r["low_p5"] <= r["low_median"]
    assert 0 <= r["sd_median"] <= r["sd_p90"] <= r["sd_max"]


def test_subsets_are_drawn_distinct_when_too_many():
    drawn = subsets(40, 4, limit=300)
    assert len(drawn) == len(set(drawn)) == 300 and all(len(set(s)) == 4 and max(s) < 40 for s in drawn)
    assert len(subsets(6, 3, limit=300)) == comb(6, 3)


def test_slice_spread_rescores_a_saved_run_as_the_protocol_scored_it(tmp_path):
    paths = tiny_volume(tmp_path)
    run = tmp_path / "run"
    r = bench("bench.initial_steps", *paths, "--out", str(run), "--tiny", "--steps", "4", "--seeds", "2",
              "--base", "4", "--split", "test")
    assert r.returncode == 0, r.stderr
    r = bench("bench.slice_spread", *paths, "--run", str(run), "--tiny", "--slices", "2")
    assert r.returncode == 0, r.stderr
    result = json.loads((run / "slice_spread_steps4.json").read_text())
    trained = {m["seed"]: m["iou"] for m in json.loads((run / "summary.json").read_text())["models"]}
    # the test split scores the protocol's 2 slices, so re-scoring them must give the run's own IoUs
    np.testing.assert_allclose(result["protocol"], [trained[0], trained[1]], atol=1e-9)
    assert result["seeds"] == [0, 1] and result["subsets"] == comb(4, 2) and len(result["all"]) == 2
    row = re.search(r"^\| the protocol's 2 \(z 1 2\) \| ([\d. ]+) \|", r.stdout, re.M)[1].split()
    assert row == [f"{x:.3f}" for x in result["protocol"]]


def test_slice_spread_says_what_is_missing(tmp_path):
    r = bench("bench.slice_spread", "--run", str(tmp_path), "--raw", "x", "--labels", "y")
    assert r.returncode == 2 and "summary.json is missing" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "summary.json").write_text(json.dumps({"split": "dev", "base": 4, "models": [{"steps": 4, "seed": 0}]}))
    r = bench("bench.slice_spread", "--run", str(tmp_path), "--raw", "x", "--labels", "y")
    assert r.returncode == 2 and "no saved models for 4 steps" in r.stderr and "Traceback" not in r.stderr
