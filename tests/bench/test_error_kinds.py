"""``bench.error_kinds``: a first model's errors split into a bloated edge and objects of its own."""
from __future__ import annotations

import json

import numpy as np

from bench.error_kinds import slice_errors, summarise
from tests.bench.tiny_runs import bench, one_model_run

def test_an_edge_one_px_too_wide_and_an_object_of_its_own_are_told_apart():
    truth = np.zeros((40, 40), bool)
    truth[5:15, 5:15] = True                 # caught, but drawn 1 px too wide
    truth[30:34, 30:34] = True               # missed whole
    prob = np.zeros((40, 40))
    prob[4:16, 4:16] = 0.9
    prob[5:10, 25:30] = 0.8                  # an object of the model's own, 10 px from any mitochondrion
    c = slice_errors(prob, truth, near=3)
    assert (c["tp"], c["fp"], c["fn"]) == (100, 44 + 25, 16)
    assert c["fp_near"] == 44 and c["fn_near"] == 0          # the ring is edge; the lone square and the miss are not
    assert (c["objects"], c["false_objects"], c["true_objects"], c["missed_objects"]) == (2, 1, 2, 1)
    s = summarise(c, {0.5: 0.5})
    assert s["precision"] == 100 / 169 and s["recall"] == 100 / 116
    assert s["fp_far_share"] == 25 / 69 and s["fn_far_share"] == 1.0 and s["false_object_share"] == 0.5
    assert slice_errors(prob, truth, near=0)["fp_near"] == 0 and slice_errors(prob, truth, threshold=0.85)["fp"] == 44


def test_error_kinds_rescores_a_saved_run_to_its_own_iou(tmp_path):
    paths, run = one_model_run(tmp_path)
    r = bench("bench.error_kinds", *paths, "--run", str(run), "--tiny")
    assert r.returncode == 0, r.stderr
    got = json.loads((run / "error_kinds_steps4.json").read_text())["models"]["0"]
    trained = json.loads((run / "summary.json").read_text())["models"][0]["iou"]
    assert abs(got["iou"] - trained) < 1e-9 and got["iou_at_0.5"] == got["iou"]     # a dev run scores every slice
    assert f"| 0 | {got['iou']:.3f} | {got['precision']:.3f} |" in r.stdout
    bad = bench("bench.error_kinds", "--run", str(tmp_path / "none"), "--raw", "x", "--labels", "y")
    assert bad.returncode == 2 and "summary.json is missing" in bad.stderr and "Traceback" not in bad.stderr
