"""Z consensus: a one-slice blob fades, an object through the slices stays, any slice read alone equals the
whole volume's, and a stored prediction reads the same from every plane."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.infer import consensus_plane, consensus_prob, foreground_probability, open_prediction, predict_volume
from ml.model import UNet2D
from ml.volume import Volume
from ml.z_consensus import WEIGHT, check_weight, neighbours, slice_consensus, smooth_z


def _two_class(fg: np.ndarray) -> np.ndarray:
    """(2, Z, Y, X) probabilities from a foreground map."""
    return np.stack([1 - fg, fg]).astype(np.float32)


def test_a_blob_in_one_slice_fades_and_an_object_through_the_slices_stays():
    fg = np.zeros((5, 8, 8), np.float32)
    fg[2, :3, :3] = 0.9                    # one slice only: a false object of a 2D model
    fg[:, 5:, 5:] = 0.9                    # an object through every slice, the ends included
    mixed = smooth_z(_two_class(fg), WEIGHT)
    assert mixed[1, 2, 0, 0] == pytest.approx(0.5 * 0.9) and (mixed[1, :, :3, :3] < 0.5).all()
    assert np.allclose(mixed[1, :, 5:, 5:], 0.9)
    assert np.allclose(mixed.sum(0), 1.0)  # still a distribution over the classes


def test_off_or_a_single_slice_changes_nothing():
    prob = _two_class(np.random.default_rng(0).random((4, 6, 6)))
    assert np.array_equal(smooth_z(prob, 0.0), prob)
    assert np.array_equal(smooth_z(prob[:, :1], WEIGHT), prob[:, :1])


def test_any_slice_read_with_its_neighbours_equals_the_whole_volumes_consensus():
    prob = _two_class(np.random.default_rng(1).random((6, 5, 7)))
    whole = smooth_z(prob, WEIGHT, axis=1)
    for z in range(6):
        z0, z1 = neighbours(z, 6)
        assert np.allclose(slice_consensus(prob[:, z0:z1], z, z0, WEIGHT, axis=1), whole[:, z])


@pytest.mark.parametrize("depth, axis, weight", [(1, 1, WEIGHT), (2, 0, WEIGHT), (3, 1, 0.3), (3, 0, 0.0)])
def test_one_slice_mixed_alone_is_the_stacks_consensus_to_the_bit(depth, axis, weight):
    stack = np.moveaxis(_two_class(np.random.default_rng(depth).random((depth, 5, 7))), 1, axis)
    for z in range(depth):
        one = slice_consensus(stack, z + 4, 4, weight, axis=axis)
        assert np.array_equal(one, np.take(smooth_z(stack, weight, axis), z, axis=axis))


@pytest.mark.parametrize("bad", [-0.1, 0.5, 0.7, float("nan")])
def test_a_weight_that_outweighs_the_slice_is_refused(bad):
    with pytest.raises(ValueError, match="z consensus"):
        check_weight(bad)


def _sharp_model() -> UNet2D:
    """A random model whose probabilities vary from slice to slice (its logits amplified)."""
    torch.manual_seed(0)
    model = UNet2D(base=4, depth=2)
    with torch.no_grad():
        model.head.weight.mul_(300.0)
    return model.eval()


def test_a_stored_prediction_reads_in_consensus_from_every_plane(tmp_path, synthetic_volume):
    model = _sharp_model()
    raw = synthetic_volume[0][:4, :64, :64]
    group = open_prediction(predict_volume(model, Volume.from_array(raw), tmp_path / "p.zarr", lo=0, hi=255,
                                           tile=64))
    assert group.attrs["z_consensus"] == WEIGHT
    stored = np.asarray(group["prob"][:], np.float32)             # the model's own slices, unmixed
    whole = smooth_z(stored, WEIGHT, axis=1)
    assert np.abs(whole - stored).max() > 0.01                     # the consensus does change this volume
    for z in range(4):
        assert np.allclose(consensus_prob(group, z), whole[:, z], atol=1e-6)
        assert np.allclose(foreground_probability(group, z), whole[1:, z].sum(0), atol=1e-6)
    assert np.allclose(consensus_plane(group, "xz", 10), whole[:, :, 10, :], atol=1e-6)
    assert np.allclose(consensus_plane(group, "yz", 20), whole[:, :, :, 20], atol=1e-6)
    assert np.allclose(consensus_plane(group, "xy", 3), whole[:, 3], atol=1e-6)


def test_a_prediction_written_before_the_consensus_reads_as_written(tmp_path, synthetic_volume):
    torch.manual_seed(0)
    raw = synthetic_volume[0][:3, :64, :64]
    path = predict_volume(UNet2D(base=4, depth=2), Volume.from_array(raw), tmp_path / "old.zarr", lo=0, hi=255,
                          tile=64)
    import zarr

    attrs = zarr.open_group(str(path), mode="r+").attrs
    del attrs["z_consensus"]
    group = open_prediction(path)
    assert np.allclose(consensus_prob(group, 1), np.asarray(group["prob"][:, 1], np.float32))


def test_the_weight_is_chosen_per_prediction(tmp_path, synthetic_volume):
    torch.manual_seed(0)
    raw = synthetic_volume[0][:3, :64, :64]
    path = predict_volume(UNet2D(base=4, depth=2), Volume.from_array(raw), tmp_path / "off.zarr", lo=0, hi=255,
                          tile=64, z_consensus=0.0)
    group = open_prediction(path)
    assert np.array_equal(consensus_prob(group, 1), np.asarray(group["prob"][:, 1], np.float32))
    with pytest.raises(ValueError, match="z consensus"):
        predict_volume(UNet2D(base=4, depth=2), Volume.from_array(raw), tmp_path / "bad.zarr", lo=0, hi=255,
                       z_consensus=0.5)
