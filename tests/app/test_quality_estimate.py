"""The quality a trained model is shown with never flatters it (issue 10).

Few strokes, all deep inside objects and far out in the background, once made the page say
"validation IoU 1.000" for a model with 0.169 against ground truth. Now such labels give "not
estimated" with the reason, and dense labels give a range whose low end (the number shown) does not
overstate and whose high end lies within a stated tolerance of the
true IoU on a synthetic volume with ground truth.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from app.services import training
from tests.app.envs import synthetic_env

TOLERANCE = 0.15             # how far the range may miss the IoU vs ground truth on the dense-label case below
TRAIN = {"model": {"base": 8, "depth": 3}, "train": {"crop": 64, "batch_size": 4, "eval_every": 10}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return synthetic_env(tmp_path_factory.mktemp("ws"), (6, 160, 160), seed=1, extra=TRAIN)


def _clear(env) -> None:
    for z in range(env.gt.shape[0]):
        env.store.paint(z, np.ones(env.gt.shape[1:], bool), 0)


def test_strokes_inside_objects_give_no_number_and_say_why(env):
    _clear(env)
    for z in range(env.gt.shape[0]):                      # the 1.000-vs-0.169 case: easy pixels only
        inside = ndimage.binary_erosion(env.gt[z] > 0, iterations=4)
        far = ~ndimage.binary_dilation(env.gt[z] > 0, iterations=12)
        env.store.paint(z, inside, 2)
        env.store.paint(z, far & (np.arange(160)[:, None] < 40), 1)
    metrics = training.train_model(env.config, env.pid, steps=80, lr=3e-3)["metrics"]
    quality = metrics["quality"]
    assert quality["iou"] is None and quality["reason"].startswith("not enough held-out labels")
    assert metrics["val_iou"] is not None and metrics["val_iou"] > metrics["gt_iou"]   # what the page used to show
    version = training.list_versions(env.config, env.pid)[0]
    assert version["est_iou"] is None and version["quality_text"].startswith("quality not estimated: ")


def test_dense_labels_give_an_estimate_close_to_the_true_iou(env):
    _clear(env)
    for z in range(env.gt.shape[0]):
        top = np.arange(160)[:, None] < 96                # the top rows of every slice, fully labeled
        env.store.paint(z, top & (env.gt[z] == 0), 1)
        env.store.paint(z, top & (env.gt[z] > 0), 2)
    metrics = training.train_model(env.config, env.pid, steps=150, lr=3e-3)["metrics"]
    quality = metrics["quality"]
    assert quality["iou"] is not None, quality["reason"]
    low, high, truth = quality["iou"], quality["high"], metrics["gt_iou"]
    assert low <= truth + TOLERANCE, "the number shown overstates the model"
    assert high >= truth - TOLERANCE and abs(high - truth) <= TOLERANCE, "the range misses the true IoU"
    assert quality["basis"]["boundary"] > 0 and quality["basis"]["regions"] >= 1


def test_the_line_says_which_model_the_estimate_read():
    """bench.quality v4: read from a self-trained model the low end overstated the true IoU in 8 of 9 runs (a
    version stored before v41); v5: read before self-training, at most 0.035 above it; a continued version,
    which self-trains from its first step, up to 0.071 above it."""
    from app.services.evaluation import BEFORE_SELF_TRAINING, CONTINUED_CAVEAT, SELF_TRAINED_CAVEAT, quality_text

    estimate = {"iou": 0.7, "high": 0.8, "basis": {"regions": 3, "pixels": 50_000, "boundary": 900}}
    plain = quality_text({"quality": estimate, "self_training": None})
    assert plain.startswith("estimated IoU 0.70 to 0.80") and not plain.endswith(")" + SELF_TRAINED_CAVEAT)
    said = quality_text({"quality": estimate, "self_training": {"pixels": 12_000}})
    assert said == plain + SELF_TRAINED_CAVEAT and "upper bound" in said
    before = quality_text({"quality": estimate, "self_training": {"pixels": 1}, "quality_before_self_training": True})
    assert before == plain + BEFORE_SELF_TRAINING and "floor" in before
    continued = quality_text({"quality": estimate, "self_training": {"pixels": 1}, "quality_before_self_training": False})
    assert continued == plain + CONTINUED_CAVEAT and "may run high" in continued
    withheld = {"iou": None, "reason": "the held-out labels are strokes", "basis": {}}
    assert quality_text({"quality": withheld, "self_training": {"pixels": 1}}).endswith("strokes")
