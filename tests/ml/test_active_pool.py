"""Candidate pool: grid geometry, ranges, exclusion of labeled patches, seeded subsampling."""
from __future__ import annotations

from dataclasses import asdict
import json

import numpy as np
import pytest

from ml.active.pool import Patch, candidate_pool, labeled_fraction_excluder
from ml.labels.store import LabelStore


def counting(store: LabelStore) -> LabelStore:
    """Count read() calls on a real store (to check that untouched patches are never read)."""
    store.reads = 0
    original = store.read

    def read(*args, **kwargs):
        store.reads += 1
        return original(*args, **kwargs)

    store.read = read
    return store


def test_grid_default_stride_tiles_without_overlap():
    pool = candidate_pool((2, 256, 384), size=128)
    assert len(pool) == 2 * 2 * 3
    assert pool[0] == Patch(0, 0, 0, 128) and pool[-1] == Patch(1, 128, 256, 128)
    assert json.loads(json.dumps(asdict(pool[1]))) == {"z": 0, "y": 0, "x": 128, "size": 128}


def test_stride_and_patches_stay_inside_volume():
    pool = candidate_pool((1, 200, 200), size=64, stride=32)
    assert {p.y for p in pool} == {0, 32, 64, 96, 128}
    assert all(p.y + p.size <= 200 and p.x + p.size <= 200 for p in pool)


def test_ranges_restrict_positions():
    pool = candidate_pool((6, 512, 512), size=128, y_range=(0, 256), z_range=(2, 4))
    assert pool and all(p.y + p.size <= 256 for p in pool)
    assert {p.z for p in pool} == {2, 3}
    right = candidate_pool((1, 512, 512), size=128, x_range=(256, 512))
    assert {p.x for p in right} == {256, 384}


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="does not fit"):
        candidate_pool((1, 100, 100), size=128)
    with pytest.raises(ValueError, match="y_range"):
        candidate_pool((1, 256, 256), size=64, y_range=(200, 100))
    with pytest.raises(ValueError, match="Z, Y, X"):
        candidate_pool((256, 256), size=64)
    with pytest.raises(TypeError, match="exclude"):
        candidate_pool((1, 256, 256), size=64, exclude=42)


def test_callable_exclude():
    pool = candidate_pool((3, 128, 128), size=64, exclude=lambda p: p.z == 1)
    assert len(pool) == 8 and all(p.z != 1 for p in pool)


def test_label_store_excludes_labeled_patches_only(tmp_path):
    store = LabelStore.create(tmp_path / "labels", (2, 256, 256))
    full = np.ones((64, 64), bool)
    store.paint(0, full, 2)  # a quarter of patch (0, 0, 0) labeled
    store.paint(1, np.ones((1, 1), bool), 1, y0=130, x0=130)  # one pixel: below the threshold
    pool = candidate_pool((2, 256, 256), size=128, exclude=store)
    assert Patch(0, 0, 0, 128) not in pool
    assert Patch(1, 128, 128, 128) in pool
    assert len(pool) == 7


def test_label_store_uses_labeled_boxes_to_skip_reads(tmp_path):
    store = counting(LabelStore.create(tmp_path / "labels", (1, 512, 512)))
    store.paint(0, np.ones((10, 10), bool), 1, y0=10, x0=10)
    exclude = labeled_fraction_excluder(store, threshold=0.001)
    kept = [p for p in candidate_pool((1, 512, 512), size=128) if not exclude(p)]
    assert len(kept) == 15 and store.reads == 1


def test_max_candidates_is_seeded_and_sorted():
    a = candidate_pool((4, 512, 512), size=64, max_candidates=20, seed=3)
    b = candidate_pool((4, 512, 512), size=64, max_candidates=20, seed=3)
    c = candidate_pool((4, 512, 512), size=64, max_candidates=20, seed=4)
    assert a == b and a != c and len(a) == 20
    assert a == sorted(a, key=lambda p: (p.z, p.y, p.x))


def test_max_candidates_with_exclusion_still_fills_quota():
    pool = candidate_pool((4, 256, 256), size=64, max_candidates=10, exclude=lambda p: p.z < 3)
    assert len(pool) == 10 and all(p.z == 3 for p in pool)


def test_labeled_grid_patches_is_the_one_geometry_of_a_labeled_patch(tmp_path):
    from ml.active.pool import labeled_grid_patches

    store = LabelStore.create(tmp_path / "grid", (2, 100, 150))
    mask = np.zeros((100, 150), bool)
    mask[95:97, 140:147] = True          # the bottom-right corner: its cell is shifted inside the image
    mask[10, 60:70] = True               # one stroke across two cells
    store.paint(1, mask, 1)
    assert labeled_grid_patches(store, 64) == [Patch(1, 0, 0, 64), Patch(1, 0, 64, 64), Patch(1, 36, 86, 64)]
    assert labeled_grid_patches(store, 512) == [Patch(1, 0, 0, 100), Patch(1, 0, 50, 100)]   # shrunk to the image


def test_window_and_box_are_the_same_patch():
    volume = np.arange(3 * 40 * 50).reshape(3, 40, 50)
    p = Patch(z=2, y=5, x=17, size=8)
    z, y0, y1, x0, x1 = p.box
    np.testing.assert_array_equal(volume[p.window], volume[z, y0:y1, x0:x1])
    assert volume[p.window].shape == (8, 8) and volume[p.window][0, 0] == volume[2, 5, 17]
