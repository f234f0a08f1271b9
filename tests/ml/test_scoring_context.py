"""Scoring with context: a candidate's scores are those of its pixels in the whole-slice prediction."""
from __future__ import annotations

import numpy as np
import pytest

from ml.active.pool import Patch, candidate_pool
from ml.active.scoring import score_patches, volume_reader
from ml.active.windows import group_by_window, window_of
from ml.infer import predict_image
from ml.io.normalize import normalize


def test_context_scores_match_the_whole_slice_prediction(em_volume, trained_scorer):
    patches = [p for p in candidate_pool(em_volume.shape, size=32, stride=16) if p.z == 1][:12]
    lo, hi = em_volume.percentiles()
    prob = predict_image(trained_scorer, normalize(em_volume[1], lo, hi), tile=64, device="cpu")["prob"]
    lc = 1.0 - prob.max(0)
    expected = np.array([lc[p.y:p.y + p.size, p.x:p.x + p.size].mean() for p in patches])
    ctx = score_patches(trained_scorer, volume_reader(em_volume, lo, hi), patches, mc_passes=0, device="cpu",
                        context=trained_scorer.receptive_radius)
    bare = score_patches(trained_scorer, volume_reader(em_volume, lo, hi), patches, mc_passes=0, device="cpu")
    assert np.allclose(ctx.least_confidence, expected, atol=1e-5)
    assert np.abs(bare.least_confidence - expected).max() > 0.01  # bare patches see padding


def test_context_scores_keep_the_patch_order(em_volume, trained_scorer):
    patches = candidate_pool(em_volume.shape, size=32, stride=16)[:30]
    assert len(group_by_window(patches, trained_scorer.receptive_radius, em_volume.shape)) > 1
    read = volume_reader(em_volume)
    radius = trained_scorer.receptive_radius
    a = score_patches(trained_scorer, read, patches, mc_passes=2, batch_size=4, device="cpu", context=radius)
    perm = np.random.default_rng(0).permutation(len(patches))
    b = score_patches(trained_scorer, read, [patches[i] for i in perm], mc_passes=0, batch_size=7, device="cpu",
                      context=radius)
    assert np.allclose(a.entropy[perm], b.entropy, atol=1e-6)
    assert np.allclose(a.embeddings[perm], b.embeddings, atol=1e-5)
    assert a.bald.shape == (len(patches),) and np.all(a.bald >= 0)


def test_windows_are_clipped_to_the_volume():
    win = window_of(Patch(2, 0, 96, 32), 40, (5, 100, 128))
    assert (win.y0, win.y1, win.x0, win.x1) == (0, 72, 56, 128)
    assert win.offset(Patch(2, 0, 96, 32)) == (0, 40)


def test_context_needs_a_volume_reader(trained_scorer):
    with pytest.raises(TypeError, match="VolumeReader"):
        score_patches(trained_scorer, lambda p: np.zeros((32, 32), np.float32), [Patch(0, 0, 0, 32)],
                      mc_passes=0, context=8)
