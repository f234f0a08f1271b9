"""A slice read with its neighbours (2.5D): which slices, what a widened model computes, and that
training, inference and scoring take the stacks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.active import Patch
from ml.active.scoring import score_patches, volume_reader
from ml.dataset import CropSampler, Region
from ml.infer import predict_image
from ml.model import FIRST_CONV, UNet2D
from ml.pretrain import PretrainConfig, Source, init_from_pretrained, pretrain
from ml.pretrained import PretrainError, fits
from ml.slice_context import NeighbourStack, as_channels, neighbour_slices, widen_first_conv, with_neighbours, z_radius


@pytest.fixture
def volume():
    return np.random.default_rng(0).random((5, 48, 64), dtype=np.float32)


def test_neighbours_are_clamped_at_the_ends():
    assert neighbour_slices(0, 5, 1) == [0, 0, 1]
    assert neighbour_slices(2, 5, 2) == [0, 1, 2, 3, 4]
    assert neighbour_slices(4, 5, 1) == [3, 4, 4]
    with pytest.raises(IndexError, match="outside"):
        neighbour_slices(5, 5, 1)


def test_a_stack_reads_the_slice_between_its_neighbours(volume):
    stack = NeighbourStack(volume, 1)
    assert stack.shape == volume.shape
    window = stack[3, 10:20, 5:30]
    assert window.shape == (3, 10, 25)
    for c, k in enumerate((2, 3, 4)):
        np.testing.assert_array_equal(window[c], volume[k, 10:20, 5:30])
    np.testing.assert_array_equal(stack[0][0], volume[0])
    with pytest.raises(TypeError, match="one slice at a time"):
        stack[1:3]
    with pytest.raises(ValueError, match="radius"):
        NeighbourStack(volume, -1)
    assert as_channels(volume[0]).shape == (1, 48, 64)


def test_a_model_says_how_many_neighbours_it_reads(volume):
    assert z_radius(UNet2D(base=4, depth=2)) == 0
    assert z_radius(UNet2D(in_channels=5, base=4, depth=2)) == 2
    with pytest.raises(ValueError, match="odd"):
        z_radius(UNet2D(in_channels=2, base=4, depth=2))
    assert with_neighbours(volume, UNet2D(base=4, depth=2)) is volume
    assert with_neighbours(volume, UNet2D(in_channels=3, base=4, depth=2))[1].shape == (3, 48, 64)


def _widened(model: UNet2D, channels: int) -> UNet2D:
    wide = UNet2D(**{**model.config, "in_channels": channels})
    state = model.state_dict()
    state[FIRST_CONV + ".weight"] = widen_first_conv(state[FIRST_CONV + ".weight"], channels)
    wide.load_state_dict(state)
    return wide


def test_a_widened_model_first_answers_what_the_2d_one_did(volume):
    torch.manual_seed(0)
    flat = UNet2D(base=4, depth=2).eval()
    wide = _widened(flat, 3).eval()
    p2d = predict_image(flat, volume[2], tile=32)["prob"]
    p25d = predict_image(wide, NeighbourStack(volume, 1)[2], tile=32)["prob"]
    np.testing.assert_allclose(p25d, p2d, atol=1e-5)
    with pytest.raises(ValueError, match="odd"):
        widen_first_conv(flat.state_dict()[FIRST_CONV + ".weight"], 2)


def test_a_2_5d_prediction_does_not_depend_on_the_tile(volume):
    torch.manual_seed(1)
    model = UNet2D(in_channels=3, base=4, depth=2).eval()
    image = NeighbourStack(volume, 1)[2]
    small, large = (predict_image(model, image, tile=t)["prob"] for t in (16, 64))
    assert np.abs(small - large).max() < 1e-4


def test_training_crops_keep_the_channels_of_one_window_together(volume):
    labels = np.zeros((48, 64), np.uint8)
    labels[10:30, 20:40], labels[40:, :] = 2, 1
    image = np.stack([volume[1]] * 3)     # identical channels: moved together, they differ only by their noise
    sampler = CropSampler([Region(image, labels)], crop=32, seed=0, zoom=0.25)
    imgs, labs = sampler.sample(6)
    assert imgs.shape == (6, 3, 32, 32) and labs.shape == (6, 32, 32)
    for crop in imgs:
        assert np.corrcoef(crop[0].ravel(), crop[2].ravel())[0, 1] > 0.9
    plain = CropSampler([Region(NeighbourStack(volume, 1)[1], labels)], crop=32, seed=0, augment=False)
    imgs, _ = plain.sample(2)
    assert not np.allclose(imgs[:, 0], imgs[:, 1])   # the neighbours are other slices
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        Region(image[:, :10], labels)


def test_candidates_are_scored_from_stacks(volume):
    model = UNet2D(in_channels=3, base=4, depth=2)
    patches = [Patch(z, 0, 0, 32) for z in (0, 2, 4)]
    scores = score_patches(model, volume_reader(NeighbourStack(volume, 1), 0.0, 1.0), patches, batch_size=2)
    assert len(scores.embeddings) == 3


def test_a_one_slice_body_starts_a_model_that_reads_neighbours(tmp_path, volume):
    out = tmp_path / "body.pt"
    body = UNet2D(base=4, depth=2)
    config = PretrainConfig(steps=2, batch_size=2, crop=32, block=8, save_every=1)
    pretrain(body, [Source(volume, 0.0, 1.0)], out, config)
    assert fits({"config": body.config}, {"in_channels": 3, "base": 4, "depth": 2})
    wide = UNet2D(in_channels=3, base=4, depth=2)
    init_from_pretrained(wide, out)
    first = wide.state_dict()[FIRST_CONV + ".weight"]
    torch.testing.assert_close(first[:, 1], body.state_dict()[FIRST_CONV + ".weight"][:, 0])
    assert not first[:, [0, 2]].any()
    with pytest.raises(PretrainError, match="in_channels 1 here vs 2 wanted"):
        init_from_pretrained(UNet2D(in_channels=2, base=4, depth=2), out)


def test_every_reader_given_the_model_reads_the_volume_as_it_does(tmp_path, volume):
    """Segmentation, the live view, pseudo-labels and scoring take the plain volume and read the neighbours."""
    from ml.infer import open_prediction, predict_volume
    from ml.live import predict_view
    from ml.self_training import SelfTrainConfig, pseudo_regions

    torch.manual_seed(2)
    model = UNet2D(in_channels=3, base=4, depth=2).eval()
    expected = predict_image(model, NeighbourStack(volume, 1)[4])["prob"]
    group = open_prediction(predict_volume(model, volume, tmp_path / "pred.zarr", lo=0.0, hi=1.0))
    np.testing.assert_allclose(np.asarray(group["prob"][:, 4], np.float32), expected, atol=2e-3)
    view = predict_view(model, volume, 4, (8, 40, 16, 48), 0.0, 1.0)["prob"]
    np.testing.assert_allclose(view, expected[:, 8:40, 16:48], atol=1e-5)
    regions = pseudo_regions(model, volume, 0.0, 1.0, [(3, (0, 32, 0, 32))], SelfTrainConfig())
    assert regions[0].image.shape == (3, 32, 32)
    plain = score_patches(model, volume_reader(volume, 0.0, 1.0), [Patch(4, 0, 0, 32)])
    stacked = score_patches(model, volume_reader(NeighbourStack(volume, 1), 0.0, 1.0), [Patch(4, 0, 0, 32)])
    np.testing.assert_allclose(plain.embeddings, stacked.embeddings, atol=1e-6)
    with pytest.raises(ValueError, match="model reads 1"):
        with_neighbours(NeighbourStack(volume, 2), UNet2D(in_channels=3, base=4, depth=2))


def test_a_sweep_reads_each_whole_slice_once(volume):
    """A whole-volume prediction of a 2.5D model costs one read per slice, not three, and keeps one stack."""
    class Counting:
        shape, reads = volume.shape, []

        def __getitem__(self, key):
            self.reads.append(key)
            return volume[key]

    counting = Counting()
    stack = NeighbourStack(counting, 1)
    for z in range(5):
        np.testing.assert_array_equal(stack[z], NeighbourStack(volume, 1)[z])
    assert sorted(counting.reads) == [0, 1, 2, 3, 4] and len(stack._recent) == 3
    stack[2, 0:4, 0:4]                          # a window is read as asked, never kept
    assert len(counting.reads) == 8 and len(stack._recent) == 3
