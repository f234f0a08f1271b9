"""``bench.pseudo_purity``: a first model's pseudo-labels split into true and false objects, and an object filter."""
from __future__ import annotations

import json

import numpy as np

from bench.pseudo_purity import _weighted_auc, nearest, object_means, references, summarise
from tests.bench.tiny_runs import bench, one_model_run


def test_object_features_are_unit_means_over_each_object():
    feats = np.zeros((2, 8, 8), np.float32)
    feats[0, :4] = 3.0                     # object 1 lies in the top half: direction (1, 0)
    feats[1, 4:] = 0.5                     # object 2 in the bottom half: direction (0, 1)
    objects = np.zeros((8, 8), int)
    objects[1:3, 1:3], objects[5:7, 5:7] = 1, 2
    means = object_means(objects, 2, feats)
    assert np.allclose(means, [[1, 0], [0, 1]])
    assert np.allclose(nearest(means, means[:1]), [0, 1]) and np.allclose(nearest(means, means[:0]), [2, 2])


def test_references_take_each_labeled_mitochondrion_and_the_background_blocks_of_a_patch():
    feats = np.ones((2, 64, 64), np.float32)
    feats[1, :32] = 0.0                    # the top blocks point along the first channel only
    truth = np.zeros((64, 64), bool)
    truth[40:50, 40:50] = truth[40:50, 5:15] = True
    fg, bg = references(feats, truth, (0, 64, 0, 64))
    assert fg.shape == (2, 2) and bg.shape == (4, 2)         # two mitochondria, four 32 px blocks (each >= half bg)
    assert np.allclose(bg[:2], [1, 0]) and np.allclose(bg[2:], np.sqrt(0.5))


def test_the_auc_weighs_objects_by_pixels_and_counts_ties_half():
    assert _weighted_auc([(1.0, True, 10), (0.0, False, 10)]) == 1.0
    assert _weighted_auc([(0.0, True, 10), (1.0, False, 10)]) == 0.0
    assert _weighted_auc([(0.5, True, 3), (0.5, False, 1)]) == 0.5
    assert _weighted_auc([(1.0, True, 30), (0.0, True, 10), (0.5, False, 1)]) == 0.75   # 30 of 40 true px rank above
    assert _weighted_auc([(1.0, True, 3)]) is None
    s = summarise({"true_px": 90, "false_px": 10, "true_kept_px": 45, "false_kept_px": 1})
    assert s == {"false_px_share": 0.1, "true_kept_share": 0.5, "false_kept_share": 0.1}


def test_pseudo_purity_rescores_a_saved_run_on_both_row_bands(tmp_path):
    paths, run = one_model_run(tmp_path)
    r = bench("bench.pseudo_purity", *paths, "--run", str(run), "--tiny", "--fg", "0.5", "--bg-share", "0.5")
    assert r.returncode == 0, r.stderr
    got = json.loads((run / "pseudo_purity_steps4_bgshare0.5.json").read_text())
    assert got["fg"] == 0.5 and got["bg"] == 0.99 and got["bg_share"] == 0.5
    model = got["models"]["0"]
    trained = json.loads((run / "summary.json").read_text())["models"][0]["iou"]
    assert abs(model["scored_rows"]["iou"] - trained) < 1e-6        # p > 0.5 on the scored rows: the run's own IoU
    assert 0 <= model["trained_rows"]["mito_as_background"] <= 1 and model["references"][1] > 0
    assert model["trained_rows"]["background_cut"] >= 0.99                  # the surest half, never below --bg
    assert f"| 0 | {model['trained_rows']['precision']:.3f} / {model['trained_rows']['recall']:.3f} |" in r.stdout
    bad = bench("bench.pseudo_purity", "--run", str(tmp_path / "none"), "--raw", "x", "--labels", "y")
    assert bad.returncode == 2 and "summary.json is missing" in bad.stderr and "Traceback" not in bad.stderr
    bad = bench("bench.pseudo_purity", *paths, "--run", str(run), "--tiny", "--bg-share", "0")
    assert bad.returncode == 2 and "bg_share=0.0 is not allowed" in bad.stderr and "Traceback" not in bad.stderr
