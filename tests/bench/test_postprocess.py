"""bench.postprocess: a saved run's models re-scored after the app's post-processing (holes, 3D size filter)."""
from __future__ import annotations

import json

import numpy as np

from bench.postprocess import setting_scores, settings_for
from tests.bench.tiny_runs import bench, one_model_run


def test_a_small_false_object_is_filtered_and_a_hole_filled():
    truth = np.zeros((3, 12, 12), bool)
    truth[:, 1:7, 1:7] = True
    prob = truth.astype(np.float32)
    prob[1, 3, 3] = 0.0                      # a hole inside the object
    prob[1, 10:12, 10:12] = 1.0              # a 4-voxel false object
    got = setting_scores(prob, truth, settings_for((0, 5, 500)), {"every": [0, 1, 2], "middle": [1]})
    assert got["min0"]["objects"] == 2 and got["min5"]["objects"] == 1
    assert got["min0"]["false_objects"] == 1 and got["min5"]["false_objects"] == 0
    assert got["min5"]["missed_objects"] == 0 and got["min500"]["missed_objects"] == 1   # 3 x 36 voxels: dropped too
    assert got["min500"]["missed_share"] == 1.0 and got["min0"]["false_share"] == 4 / (4 + 3 * 36 - 1)
    assert got["min0"]["middle"] < got["min5"]["middle"] < 1.0 == got["min5_fill"]["middle"]
    assert got["min0_fill"]["every"] < 1.0 == got["min5_fill"]["every"]


def test_a_faint_object_goes_under_a_core_threshold_and_a_one_section_object_under_min_slices():
    truth = np.zeros((5, 12, 12), bool)
    truth[:, 1:7, 1:7] = True
    prob = truth * np.float32(0.95)
    prob[2, 9:12, 9:12] = 0.7                # faint, one section, 9 voxels: a false object either filter removes
    got = setting_scores(prob, truth, settings_for((0, 50), cores=(0.9,), slices=(2,)), {"every": list(range(5))})
    assert {"min0_fill_core0.9", "min0_fill_z2", "min0_fill_core0.9_z2", "min50_fill_z2"} <= set(got)
    assert got["min0_fill"]["false_objects"] == 1
    for key in ("min0_fill_core0.9", "min0_fill_z2", "min0_fill_core0.9_z2"):
        assert got[key]["false_objects"] == 0 and got[key]["missed_objects"] == 0 and got[key]["every"] == 1.0
    assert got["min0_fill"]["false_share"] == 9 / (9 + 5 * 36) and got["min0_fill"]["missed_share"] == 0


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
                             ("--z", "0.6", "z consensus weight"), ("--core-thresholds", "0.3", "[0.5, 1)"),
                             ("--min-slices", "1", "2 or more")):
        bad = bench("bench.postprocess", *paths, "--run", str(run), "--tiny", arg, value)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    other = tmp_path / "other.json"                  # a second run of the same split and settings
    other.write_text(json.dumps({**got, "run": "other"}))
    pooled = bench("bench.postprocess", "--pool", str(run / "postprocess_steps4.json"), str(other))
    assert pooled.returncode == 0 and "2 models of 2 runs" in pooled.stdout, pooled.stderr
    twice = bench("bench.postprocess", "--pool", str(other), str(other))
    assert twice.returncode == 2 and "given twice" in twice.stderr
    assert "min20_fill: scored slices mean" in pooled.stdout and "gains against min0" in pooled.stdout
    against = bench("bench.postprocess", "--pool", str(other), "--against", "min20_fill")
    assert against.returncode == 0 and "gains against min20_fill" in against.stdout, against.stderr
    assert "min20_fill: scored slices mean" in against.stdout and "gain +0.0000 (se nan, 0 of 1 up)" in against.stdout
    unknown = bench("bench.postprocess", "--pool", str(other), "--against", "min7")
    assert unknown.returncode == 2 and "not a setting" in unknown.stderr
    missing = bench("bench.postprocess", "--pool", str(run / "none.json"))
    assert missing.returncode == 2 and "cannot pool" in missing.stderr and "Traceback" not in missing.stderr
