"""bench.postprocess: a saved run's models re-scored after the app's post-processing (holes, 3D size filter)."""
from __future__ import annotations

import json

import numpy as np

from bench.postprocess import setting_scores
from tests.bench.tiny_runs import bench, one_model_run


def test_a_small_false_object_is_filtered_and_a_hole_filled():
    truth = np.zeros((3, 12, 12), bool)
    truth[:, 1:7, 1:7] = True
    prob = truth.astype(np.float32)
    prob[1, 3, 3] = 0.0                      # a hole inside the object
    prob[1, 10:12, 10:12] = 1.0              # a 4-voxel false object
    got = setting_scores(prob, truth, (0, 5, 500), {"every": [0, 1, 2], "middle": [1]})
    assert got["min0"]["objects"] == 2 and got["min5"]["objects"] == 1
    assert got["min0"]["false_objects"] == 1 and got["min5"]["false_objects"] == 0
    assert got["min5"]["missed_objects"] == 0 and got["min500"]["missed_objects"] == 1   # 3 x 36 voxels: dropped too
    assert got["min0"]["middle"] < got["min5"]["middle"] < 1.0 == got["min5_fill"]["middle"]
    assert got["min0_fill"]["every"] < 1.0 == got["min5_fill"]["every"]


def test_postprocess_rescores_a_saved_run(tmp_path):
    paths, run = one_model_run(tmp_path)
    r = bench("bench.postprocess", *paths, "--run", str(run), "--tiny", "--min-sizes", "20", "--z", "0")
    assert r.returncode == 0, r.stderr
    got = json.loads((run / "postprocess_steps4.json").read_text())
    assert got["min_sizes"] == [0, 20] and set(got["models"]["0"]) == {"min0", "min20", "min0_fill", "min20_fill"}
    trained = json.loads((run / "summary.json").read_text())["models"][0]["iou"]
    assert abs(got["models"]["0"]["min0"]["scored"] - trained) < 1e-6     # threshold alone: the run's own IoU
    assert got["truth"]["min0"]["every"] == 1.0
    for arg, value, says in (("--min-sizes", "-3", "0 or more voxels"), ("--min-sizes", "big", "voxel counts"),
                             ("--z", "0.6", "z consensus weight")):
        bad = bench("bench.postprocess", *paths, "--run", str(run), "--tiny", arg, value)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    other = tmp_path / "other.json"                  # a second run of the same split and settings
    other.write_text(json.dumps({**got, "run": "other"}))
    pooled = bench("bench.postprocess", "--pool", str(run / "postprocess_steps4.json"), str(other))
    assert pooled.returncode == 0 and "2 models of 2 runs" in pooled.stdout, pooled.stderr
    twice = bench("bench.postprocess", "--pool", str(other), str(other))
    assert twice.returncode == 2 and "given twice" in twice.stderr
    assert "min20_fill: scored slices mean" in pooled.stdout
    missing = bench("bench.postprocess", "--pool", str(run / "none.json"))
    assert missing.returncode == 2 and "cannot pool" in missing.stderr and "Traceback" not in missing.stderr
