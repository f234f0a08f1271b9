"""Scoring with context: a candidate's scores are those of its pixels in the whole-slice prediction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.active.pool import Patch, candidate_pool
from ml.active.scoring import score_patches, volume_reader
from ml.active.windows import group_by_window, window_of
from ml.dataset import regions_from_patches
from ml.infer import predict_image
from ml.io.normalize import normalize
from ml.model import UNet2D
from ml.train import TrainConfig, train
from ml.volume import Volume


@pytest.fixture(scope="module")
def volume(synthetic_volume):
    return Volume.from_array(synthetic_volume[0], voxel_size=(40, 5, 5))


@pytest.fixture(scope="module")
def model(synthetic_volume, volume) -> UNet2D:
    """A tiny BatchNorm U-Net trained for a few steps: outputs that follow the image."""
    raw, mask = synthetic_volume
    lo, hi = volume.percentiles()
    patches = candidate_pool(volume.shape, size=64, stride=64)
    regions = regions_from_patches(normalize(raw, lo, hi), (mask != 0).astype(np.uint8), patches, offset=1)
    torch.manual_seed(0)
    net = UNet2D(base=4, depth=2, dropout=0.2)
    train(net, regions, [], TrainConfig(steps=40, batch_size=4, crop=64), device="cpu")
    return net.eval()


def test_context_scores_match_the_whole_slice_prediction(volume, model):
    patches = [p for p in candidate_pool(volume.shape, size=32, stride=16) if p.z == 1][:12]
    lo, hi = volume.percentiles()
    prob = predict_image(model, normalize(volume[1], lo, hi), tile=64, device="cpu")["prob"]
    lc = 1.0 - prob.max(0)
    expected = np.array([lc[p.y:p.y + p.size, p.x:p.x + p.size].mean() for p in patches])
    ctx = score_patches(model, volume_reader(volume, lo, hi), patches, mc_passes=0, device="cpu",
                        context=model.receptive_radius)
    bare = score_patches(model, volume_reader(volume, lo, hi), patches, mc_passes=0, device="cpu")
    assert np.allclose(ctx.least_confidence, expected, atol=1e-5)
    assert np.abs(bare.least_confidence - expected).max() > 0.01  # bare patches see padding


def test_context_scores_keep_the_patch_order(volume, model):
    patches = candidate_pool(volume.shape, size=32, stride=16)[:30]
    assert len(group_by_window(patches, model.receptive_radius, volume.shape)) > 1
    read = volume_reader(volume)
    a = score_patches(model, read, patches, mc_passes=2, batch_size=4, device="cpu", context=model.receptive_radius)
    perm = np.random.default_rng(0).permutation(len(patches))
    b = score_patches(model, read, [patches[i] for i in perm], mc_passes=0, batch_size=7, device="cpu",
                      context=model.receptive_radius)
    assert np.allclose(a.entropy[perm], b.entropy, atol=1e-6)
    assert np.allclose(a.embeddings[perm], b.embeddings, atol=1e-5)
    assert a.bald.shape == (len(patches),) and np.all(a.bald >= 0)


def test_windows_are_clipped_to_the_volume():
    win = window_of(Patch(2, 0, 96, 32), 40, (5, 100, 128))
    assert (win.y0, win.y1, win.x0, win.x1) == (0, 72, 56, 128)
    assert win.offset(Patch(2, 0, 96, 32)) == (0, 40)


def test_context_needs_a_volume_reader(model):
    with pytest.raises(TypeError, match="VolumeReader"):
        score_patches(model, lambda p: np.zeros((32, 32), np.float32), [Patch(0, 0, 0, 32)],
                      mc_passes=0, context=8)
