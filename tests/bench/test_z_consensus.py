"""bench.z_consensus: re-scoring a saved run with each slice mixed with its neighbours."""
from __future__ import annotations

import json

import numpy as np

from bench.z_consensus import weight_scores
from tests.bench.tiny_runs import bench, one_model_run


def test_a_one_slice_false_object_is_scored_away_and_the_truth_kept():
    truth = np.zeros((3, 8, 8), bool)
    truth[:, :4, :4] = True
    prob = truth * 0.9
    prob[1, 6:, 6:] = 0.9                   # a false object in the middle slice only
    got = weight_scores(prob.astype(np.float32), truth, (0.0, 0.25))
    assert got["0.000"]["precision"] < 1.0 and got["0.250"]["precision"] == 1.0
    assert got["0.250"]["recall"] == 1.0 and got["0.250"]["iou"] == 1.0


def test_z_consensus_rescores_a_saved_run(tmp_path):
    paths, run = one_model_run(tmp_path)
    r = bench("bench.z_consensus", *paths, "--run", str(run), "--tiny", "--weights", "0.25")
    assert r.returncode == 0, r.stderr
    got = json.loads((run / "z_consensus_steps4_w0.25.json").read_text())
    assert got["weights"] == [0.0, 0.25] and set(got["models"]["0"]) == {"0.000", "0.250"}
    trained = json.loads((run / "summary.json").read_text())["models"][0]["iou"]
    assert abs(got["models"]["0"]["0.000"]["iou"] - trained) < 1e-6        # w 0: the run's own IoU
    assert got["kernel_on_truth"]["0.000"]["iou"] == 1.0
    bad = bench("bench.z_consensus", *paths, "--run", str(run), "--tiny", "--weights", "0.5")
    assert bad.returncode == 2 and "z consensus weight" in bad.stderr and "Traceback" not in bad.stderr
