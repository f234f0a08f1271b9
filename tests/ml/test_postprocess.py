"""segment(): thresholds, connectivity, holes, size filter and the physical-distance split."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from ml.postprocess import PostprocessSettings, argmax_labels, segment
from ml.volume import Volume, voxels_for_volume


def ball(shape, center_nm, radius_nm, voxel_size) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    d2 = sum(((g + 0.5) * v - c) ** 2 for g, v, c in zip(grids, voxel_size, center_nm))
    return d2 <= radius_nm**2


def two_touching_balls(voxel_size=(1.0, 1.0, 1.0), r=8.0, gap=14.0) -> np.ndarray:
    vs = np.asarray(voxel_size)
    shape = tuple(int(np.ceil(s)) for s in np.array([2 * r + 6, 2 * r + 6, 2 * r + gap + 6]) / vs)
    c1 = np.array([r + 3, r + 3, r + 3])
    c2 = c1 + [0, 0, gap]
    return ball(shape, c1, r, vs) | ball(shape, c2, r, vs)


def test_threshold_and_components():
    prob = np.zeros((4, 20, 20), np.float32)
    prob[1:3, 2:6, 2:6] = 0.9
    prob[1:3, 10:15, 10:15] = 0.6
    prob[1:3, 16:19, 2:5] = 0.4  # below threshold
    lab = segment(prob)
    assert lab.dtype == np.int32 and lab.max() == 2
    assert set(np.unique(lab[1:3, 2:6, 2:6])) == {1}
    assert segment(prob, threshold=0.7).max() == 1
    assert segment(prob, threshold=0.3).max() == 3


def test_two_touching_balls_split_only_when_asked():
    mask = two_touching_balls().astype(np.float32)
    assert segment(mask).max() == 1
    split = segment(mask, split=True)
    assert split.max() == 2
    sizes = np.bincount(split.ravel())[1:]
    assert abs(sizes[0] - sizes[1]) / sizes.max() < 0.1  # cut at the neck


def test_split_respects_anisotropic_voxels():
    """Same physical shape sampled with 2x thicker z voxels still splits into two."""
    vs = (2.0, 1.0, 1.0)
    mask = two_touching_balls(vs).astype(np.float32)
    assert segment(mask, voxel_size=vs).max() == 1
    assert segment(mask, split=True, voxel_size=vs).max() == 2
    # min distance larger than the centre spacing: one marker survives, no split
    assert segment(mask, split=True, voxel_size=vs, split_min_distance_nm=20.0).max() == 1
    assert segment(mask, split=True, voxel_size=vs, split_min_distance_nm=6.0).max() == 2


def test_split_keeps_a_tube_whole():
    tube = np.zeros((9, 9, 60), np.float32)
    tube[2:7, 2:7, 3:57] = 1.0
    tube[4, 4, 20] = 1.0
    assert segment(tube, split=True).max() == 1


def test_min_size_removes_small_objects():
    prob = np.zeros((5, 30, 30), np.float32)
    prob[1:4, 2:8, 2:8] = 1  # 108 voxels
    prob[2, 20:22, 20:22] = 1  # 4 voxels
    assert segment(prob).max() == 2
    lab = segment(prob, min_size=10)
    assert lab.max() == 1 and np.count_nonzero(lab) == 108
    with pytest.raises(ValueError, match="min_size"):
        segment(prob, min_size=-1)


def test_core_threshold_keeps_objects_with_a_sure_core_and_their_rims():
    prob = np.zeros((4, 20, 20), np.float32)
    prob[1:3, 2:8, 2:8] = 0.6
    prob[1:3, 4:6, 4:6] = 0.95  # a sure core inside a faint rim
    prob[1:3, 12:18, 12:18] = 0.7  # faint throughout
    assert segment(prob).max() == 2
    lab = segment(prob, core_threshold=0.9)
    assert lab.max() == 1 and np.count_nonzero(lab) == 2 * 36  # the rim stays with its core
    assert segment(prob, core_threshold=0.95).max() == 0  # a peak must exceed the core threshold
    assert np.array_equal(segment(prob, threshold=0.5, core_threshold=0.4), segment(prob))   # under it: a no-op
    with pytest.raises(ValueError, match="core threshold must be between 0 and 1"):
        segment(prob, core_threshold=1.0)


def test_postprocess_settings_parse_loose_values_and_say_what_is_wrong():
    got = PostprocessSettings.parse({"threshold": "0.4", "min_size": "12", "core_threshold": None, "other": 1})
    assert got == PostprocessSettings(threshold=0.4, min_size=12) and got.core_threshold is None
    emptied = PostprocessSettings.parse({"threshold": 0.5, "min_size": "", "core_threshold": ""})   # cleared boxes
    assert emptied == PostprocessSettings()
    cored = PostprocessSettings.parse({"core_threshold": 0.9, "split": True})
    assert cored.as_params() == {"threshold": 0.5, "min_size": 0, "split": True, "core_threshold": 0.9}
    assert cored.describe() == "threshold 0.5, core 0.9, min size 0, split"
    for bad, says in (({"threshold": 1.5}, "between 0 and 1"), ({"min_size": -1}, "0 or more"),
                      ({"threshold": "x"}, "must be numbers"), ({"core_threshold": 1.2}, "core"),
                      ({"min_size": 2.5}, "whole number"), ({"min_size": 1, "min_size_unit": "nm"}, "voxels or um3"),
                      ({"min_size": 0.01, "min_size_unit": "um3"}, "needs the volume's voxel size")):
        with pytest.raises(ValueError, match=says):
            PostprocessSettings.parse(bad)


def test_a_min_size_in_um3_becomes_the_fewest_voxels_that_hold_it():
    """VNC's voxels (45 x 4.6 x 4.6 nm, 952.2 nm³): 0.001 µm³ is 1,050.2 voxels, so objects of 1,051 or more stay."""
    vnc = (45.0, 4.6, 4.6)
    got = PostprocessSettings.parse({"min_size": "0.001", "min_size_unit": "um3"}, voxel_size=vnc)
    assert got.min_size == 1051 and got.as_params()["min_size"] == 1051      # the record keeps voxels
    assert PostprocessSettings.parse({"min_size": 952.2e-9, "min_size_unit": "um3"}, vnc).min_size == 1  # exactly one
    assert PostprocessSettings.parse({"min_size": 0, "min_size_unit": "um3"}, vnc).min_size == 0
    assert PostprocessSettings.parse({"min_size": 50}, voxel_size=vnc).min_size == 50        # voxels: unchanged
    assert got.describe(vnc) == "threshold 0.5, min size 1051 voxels (0.001 µm³)"
    assert got.describe() == "threshold 0.5, min size 1051"                                  # size unknown
    with pytest.raises(ValueError, match="voxel size is not known"):
        voxels_for_volume(0.001, None)


def test_a_physical_min_size_keeps_the_same_objects_at_another_voxel_size():
    """The reason for the unit: one object of 6x6x3 voxels at 10 nm, and the same object sampled at 5 nm in
    y and x (4x the voxels), pass or fail the same 0.0001 µm³ filter (108,000 nm³ against 100,000)."""
    coarse = np.zeros((5, 20, 20), np.float32)
    coarse[1:4, 2:8, 2:8] = 1
    fine = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2)
    for prob, vs in ((coarse, (10.0, 10.0, 10.0)), (fine, (10.0, 5.0, 5.0))):
        keep = PostprocessSettings.parse({"min_size": 1e-4, "min_size_unit": "um3"}, vs)
        drop = PostprocessSettings.parse({"min_size": 1.1e-4, "min_size_unit": "um3"}, vs)
        assert segment(prob, voxel_size=vs, **keep.as_params()).max() == 1
        assert segment(prob, voxel_size=vs, **drop.as_params()).max() == 0


def test_min_slices_drops_blobs_of_one_section_but_not_at_the_volume_faces():
    prob = np.zeros((6, 20, 20), np.float32)
    prob[1:5, 2:8, 2:8] = 1  # four sections
    prob[2, 12:18, 12:18] = 1  # one section, inside the stack
    prob[0, 12:18, 2:8] = 1  # one section, cut by the first slice
    assert segment(prob).max() == 3
    lab = segment(prob, min_slices=2)
    assert lab.max() == 2 and lab[2, 14, 14] == 0 and lab[0, 14, 4] > 0
    assert segment(prob, min_slices=5).max() == 1  # the 4-section object goes too; the cut one stays
    assert segment(prob[2], min_slices=3).max() == 2  # one (Y, X) slice: the extent is not known
    with pytest.raises(ValueError, match="min_slices"):
        segment(prob, min_slices=0)


def test_connectivity_changes_count_for_diagonal_touch():
    prob = np.zeros((3, 6, 6), np.float32)
    prob[1, 1, 1] = prob[1, 2, 2] = 1  # edge-adjacent in-plane diagonal (18-connected)
    prob[0, 4, 4] = prob[1, 5, 5] = 1  # corner-adjacent (26-connected only)
    assert segment(prob, connectivity=1, fill_holes=False).max() == 4
    assert segment(prob, connectivity=2, fill_holes=False).max() == 3
    assert segment(prob, connectivity=3, fill_holes=False).max() == 2
    with pytest.raises(ValueError, match="connectivity"):
        segment(prob, connectivity=6)


def test_fill_holes_in_slices_and_3d():
    prob = np.zeros((7, 12, 12), np.float32)
    prob[1:6, 2:10, 2:10] = 1
    prob[3, 5:7, 5:7] = 0  # enclosed cavity
    prob[1:6, 4, 4] = 0  # a channel through z: a hole in every slice, open in 3D
    filled = segment(prob)
    assert filled[3, 5, 5] > 0 and filled[2, 4, 4] > 0
    kept = segment(prob, fill_holes=False)
    assert kept[3, 5, 5] == 0 and kept[2, 4, 4] == 0


def test_accepts_2d_zarr_and_volume():
    img = np.zeros((16, 16), np.float32)
    img[2:6, 2:6] = 1
    img[9:12, 9:12] = 1
    lab2d = segment(img)
    assert lab2d.shape == (16, 16) and lab2d.max() == 2
    arr = np.stack([img] * 3)
    z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=arr.shape, chunks=(1, 16, 16), dtype="float32")
    z[:] = arr
    assert segment(z).max() == 2
    assert segment(Volume.from_array(arr)).max() == 2
    with pytest.raises(ValueError, match="shape"):
        segment(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="voxel_size"):
        segment(arr, voxel_size=(1, 1))


def test_argmax_labels_slice_by_slice():
    prob = np.zeros((3, 2, 4, 4), np.float32)
    prob[0] = 0.5
    prob[2, 1, :2] = 0.9
    prob[1, 0, 3] = 0.8
    out = argmax_labels(prob)
    assert out.dtype == np.uint8 and out.shape == (2, 4, 4)
    assert out[1, 0, 0] == 2 and out[0, 3, 3] == 1 and out[0, 0, 0] == 0
    assert np.array_equal(argmax_labels(prob[:, 0]), out[0])


def test_fast_hole_filling_matches_scipy_reference():
    from scipy import ndimage as ndi

    from ml.postprocess import fill_mask_holes

    rng = np.random.default_rng(0)
    mask = ndi.binary_opening(rng.random((6, 40, 40)) > 0.45)
    ref = ndi.binary_fill_holes(np.stack([ndi.binary_fill_holes(m) for m in mask]))
    out = fill_mask_holes(mask)
    assert np.array_equal(out, ref) and out.sum() > mask.sum()
