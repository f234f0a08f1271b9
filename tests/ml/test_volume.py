"""Volume (lazy (Z, Y, X) view) and the intensity windows every consumer shares."""
from __future__ import annotations

import numpy as np
import pytest

from ml.io.normalize import normalize, to_uint8
from ml.volume import Volume


class ReadLog:
    """A real (Z, Y, X) array that records which z slices each read touched."""

    def __init__(self, arr: np.ndarray):
        self.arr, self.shape, self.dtype, self.reads = arr, arr.shape, arr.dtype, []

    def __getitem__(self, key):
        out = self.arr[key]
        zkey = key[0] if isinstance(key, tuple) else key
        self.reads.append(range(*zkey.indices(self.shape[0])) if isinstance(zkey, slice) else [zkey])
        return out


def test_indexing_planes_and_metadata(synthetic_volume):
    raw, _ = synthetic_volume
    vol = Volume(raw, voxel_size=[40, 5, 5], path="/data/em.tif")
    assert vol.shape == raw.shape and vol.dtype == np.uint8 and len(vol) == raw.shape[0]
    assert vol.voxel_size == (40.0, 5.0, 5.0) and vol.name == "em.tif" and vol.nbytes == raw.nbytes
    np.testing.assert_array_equal(vol[1:3, 10:20, 5:9], raw[1:3, 10:20, 5:9])
    np.testing.assert_array_equal(vol.slice(2), raw[2])
    np.testing.assert_array_equal(vol.plane("xz", 7), raw[:, 7, :])
    np.testing.assert_array_equal(vol.plane("yz", 9), raw[:, :, 9])
    with pytest.raises(ValueError, match="xy"):
        vol.plane("zz", 0)


def test_from_array_2d_is_depth_one_and_shape_checked():
    vol = Volume.from_array(np.ones((4, 5), np.uint16))
    assert vol.shape == (1, 4, 5) and vol.voxel_size is None and vol.name == "array"
    with pytest.raises(ValueError, match="3 axes"):
        Volume(np.zeros((2, 3, 4, 5)))


@pytest.mark.parametrize("bad", [(1, 2), (0, 1, 1), (1, -1, 1), (1, float("nan"), 1), (1, None, 1), "abc"])
def test_bad_voxel_size_rejected(bad):
    with pytest.raises(ValueError, match="voxel_size"):
        Volume(np.zeros((1, 2, 2)), voxel_size=bad)


def test_numpy_voxel_size_accepted():
    assert Volume(np.zeros((1, 2, 2)), voxel_size=np.array([3, 2, 1])).voxel_size == (3.0, 2.0, 1.0)


def test_percentiles_sample_slices_and_cache():
    arr = np.stack([np.full((8, 8), z, np.uint8) for z in range(40)])
    log = ReadLog(arr)
    vol = Volume(log)
    lo, hi = vol.percentiles(0.0, 100.0, max_slices=5)
    touched = sorted({z for r in log.reads for z in r})
    assert len(touched) == 5 and touched[0] == 0 and touched[-1] == 39
    assert (lo, hi) == (0.0, 39.0)
    n = len(log.reads)
    assert vol.percentiles(0.0, 100.0) == (lo, hi) and len(log.reads) == n  # cached: no new reads


def test_percentiles_of_constant_volume_give_nonempty_window():
    lo, hi = Volume(np.full((2, 4, 4), 7, np.uint8)).percentiles()
    assert lo == 7.0 and hi > lo


def test_close_runs_closer_once():
    calls = []
    with Volume(np.zeros((1, 2, 2)), closer=lambda: calls.append(1)) as vol:
        assert vol.shape == (1, 2, 2)
    vol.close()
    assert calls == [1]


# --- intensity windows ------------------------------------------------------------------------------
def test_normalize_maps_window_to_unit_interval_and_clips():
    arr = np.array([0, 10, 60, 110, 255], np.uint8)
    out = normalize(arr, 10, 110)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])


def test_normalize_nan_and_degenerate_window():
    np.testing.assert_array_equal(normalize(np.array([np.nan, 2.0]), 0, 1), [0.0, 1.0])
    np.testing.assert_array_equal(normalize(np.array([1, 5, 9]), 5, 5), [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="lo <= hi"):
        normalize(np.zeros(3), 2, 1)


def test_to_uint8_display_window():
    out = to_uint8(np.array([100, 150, 200, 250], np.uint16), 100, 200)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 128, 255, 255])
