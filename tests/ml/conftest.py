"""Fixtures shared by the scoring tests: a small EM-like volume and a U-Net trained on it for a few steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.active.pool import candidate_pool
from ml.dataset import regions_from_patches
from ml.io.normalize import normalize
from ml.model import UNet2D
from ml.train import TrainConfig, train
from ml.volume import Volume


@pytest.fixture(scope="session")
def em_volume(synthetic_volume) -> Volume:
    return Volume.from_array(synthetic_volume[0], voxel_size=(40, 5, 5))


@pytest.fixture(scope="session")
def trained_scorer(synthetic_volume, em_volume) -> UNet2D:
    """A tiny BatchNorm U-Net trained for a few steps: outputs that follow the image."""
    raw, mask = synthetic_volume
    lo, hi = em_volume.percentiles()
    patches = candidate_pool(em_volume.shape, size=64, stride=64)
    regions = regions_from_patches(normalize(raw, lo, hi), (mask != 0).astype(np.uint8), patches, offset=1)
    torch.manual_seed(0)
    net = UNet2D(base=4, depth=2, dropout=0.2)
    train(net, regions, [], TrainConfig(steps=40, batch_size=4, crop=64), device="cpu")
    return net.eval()
