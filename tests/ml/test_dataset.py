"""Regions from sparse labels, splits and the crop sampler."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ml.dataset import CropSampler, Region, merge_boxes, regions_from_patches, regions_from_store, split_regions
from ml.volume import Volume


def test_merge_boxes_joins_touching_and_keeps_apart():
    boxes = [(0, 10, 0, 10), (10, 20, 5, 15), (100, 110, 100, 110)]
    assert merge_boxes(boxes) == [(0, 20, 0, 15), (100, 110, 100, 110)]
    assert len(merge_boxes(boxes, gap=200)) == 1


def test_regions_from_store_pads_with_context(tmp_path, synthetic_volume):
    store_mod = pytest.importorskip("ml.labels.store")
    raw, _ = synthetic_volume
    vol = Volume.from_array(raw)
    store = store_mod.LabelStore.create(tmp_path / "labels", vol.shape)
    mask = np.zeros((128, 128), bool)
    mask[40:50, 60:64] = True
    store.paint(2, mask, 2)
    far = np.zeros((128, 128), bool)
    far[5:8, 5:8] = True
    store.paint(4, far, 1)
    regions = regions_from_store(vol, store, lo=0, hi=255, pad=16)
    assert [r.z for r in regions] == [2, 4]
    r = regions[0]
    assert (r.y0, r.x0) == (24, 44) and r.image.shape == (10 + 32, 4 + 32)
    assert np.allclose(r.image, raw[2, 24:66, 44:80] / 255.0, atol=1e-6)
    assert r.n_labeled == 40 and set(np.unique(r.labels)) == {0, 2}
    assert regions[1].image.shape == (8 + 16, 8 + 16)  # clipped at the top-left border


def test_regions_from_store_duck_typed_store_merges_nearby_chunks():
    labels = np.zeros((1, 64, 64), np.uint8)
    labels[0, 10:20, 10:20] = 1
    labels[0, 30:34, 12:16] = 2
    store = SimpleNamespace(
        labeled_boxes=lambda: [(0, 10, 20, 10, 20), (0, 30, 34, 12, 16)],
        read=lambda z, y0, y1, x0, x1: labels[z, y0:y1, x0:x1],
    )
    vol = Volume.from_array(np.full((1, 64, 64), 128, np.uint8))
    regions = regions_from_store(vol, store, lo=0, hi=256, pad=8)
    assert len(regions) == 1 and regions[0].n_labeled == 100 + 16


def test_regions_from_patches_offset_and_context():
    from ml.active.pool import Patch

    norm = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)
    gt = np.zeros((2, 64, 64), np.uint8)
    gt[1, 20:30, 20:30] = 1
    regs = regions_from_patches(norm, gt, [Patch(1, 16, 16, 32)], offset=1, pad=8)
    r = regs[0]
    assert r.image.shape == (48, 48) and np.array_equal(r.image, norm[1, 8:56, 8:56])
    assert r.n_labeled == 32 * 32 and (r.labels == 2).sum() == 100
    assert (r.labels[:8] == 0).all()  # context is unlabeled
    regs = regions_from_patches(lambda p: norm[p.z, p.y:p.y + p.size, p.x:p.x + p.size], gt,
                                [Patch(0, 0, 0, 16)], offset=1)
    assert regs[0].image.shape == (16, 16) and (regs[0].labels == 1).all()


def _region(h=64, w=64, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.uint8)
    lab[::3, ::3] = rng.integers(1, 3, lab[::3, ::3].shape)
    return Region(rng.random((h, w)), lab)


def test_split_whole_regions_and_single_region_strip():
    regs = [_region(seed=i) for i in range(5)]
    train, val = split_regions(regs, 0.2, seed=0)
    assert len(val) == 1 and len(train) == 4
    assert {id(r) for r in train}.isdisjoint(id(r) for r in val)
    assert split_regions(regs, 0.2, 0)[1][0] is val[0]  # seeded
    one = _region(96, 48)
    (tr,), (va,) = split_regions([one], 0.25)
    assert np.array_equal((tr.labels > 0) | (va.labels > 0), one.labels > 0)
    assert not ((tr.labels > 0) & (va.labels > 0)).any()
    rows = np.flatnonzero(va.labels.any(1))
    assert rows.min() > np.flatnonzero(tr.labels.any(1)).max()  # a spatial strip, not scattered
    assert 0.1 < va.n_labeled / one.n_labeled < 0.4
    assert split_regions(regs, 0.0) == (regs, [])


def test_sampler_class_balanced_and_seeded():
    lab = np.ones((200, 200), np.uint8)
    lab[100:104, 100:104] = 2  # 16 rare pixels among 40000
    img = np.where(lab == 2, 1.0, 0.0).astype(np.float32)
    s = CropSampler([Region(img, lab)], crop=16, augment=False, seed=3, jitter=0.0)
    x, y = s.sample(200)
    assert x.shape == (200, 1, 16, 16) and y.shape == (200, 16, 16) and y.dtype == np.int64
    centre_class = y[:, 8, 8]
    assert 0.35 < np.mean(centre_class == 2) < 0.65
    x2, y2 = CropSampler([Region(img, lab)], crop=16, augment=False, seed=3, jitter=0.0).sample(200)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


@pytest.mark.parametrize("balance, rare_share", [(1.0, 0.5), (0.5, 0.25), (0.0, 0.1)])
def test_balance_draws_crop_centres_from_even_to_by_pixel_count(balance, rare_share):
    lab = np.ones((100, 100), np.uint8)
    lab[:10] = 2                                 # the rare class: 10 % of the labeled pixels
    img = np.zeros(lab.shape, np.float32)
    s = CropSampler([Region(img, lab)], crop=1, augment=False, seed=0, jitter=0.0, balance=balance)
    _, y = s.sample(2000)                        # a 1 px crop is its centre
    assert np.mean(y == 2) == pytest.approx(rare_share, abs=0.04)


def test_sampler_small_region_is_padded_and_augment_keeps_alignment():
    img = np.zeros((20, 30), np.float32)
    img[5:10, 5:25] = 1.0
    lab = np.where(img > 0, 2, 1).astype(np.uint8)
    s = CropSampler([Region(img, lab)], crop=64, augment=True, seed=0)
    x, y = s.sample(16)
    assert x.shape == (16, 1, 64, 64)
    assert (y > 0).sum(axis=(1, 2)).tolist() == [600] * 16  # padding stays unlabeled, no duplicates
    for xi, yi in zip(x[:, 0], y):
        assert xi[yi == 2].mean() > xi[yi == 1].mean() + 0.3  # flips/rotations applied to both
    assert not np.array_equal(x[0], x[1])


def test_zoom_shows_an_object_at_other_sizes_and_keeps_it_aligned():
    lab = np.ones((300, 300), np.uint8)
    lab[140:160, 140:160] = 2                       # a 20 x 20 object: 400 px in an unzoomed crop
    img = np.where(lab == 2, 1.0, 0.0).astype(np.float32)

    def areas(zoom: float) -> list[int]:
        x, y = CropSampler([Region(img, lab)], crop=128, seed=5, zoom=zoom).sample(64)
        assert x.shape == (64, 1, 128, 128) and y.shape == (64, 128, 128) and set(np.unique(y)) <= {1, 2}
        for xi, yi in zip(x[:, 0], y):
            if (yi == 2).sum() > 50:
                assert xi[yi == 2].mean() > xi[yi == 1].mean() + 0.5      # image and labels zoomed together
        inside = [yi for yi in y if (yi == 2).any() and not ((yi[[0, -1]] == 2).any() or (yi[:, [0, -1]] == 2).any())]
        return [int((yi == 2).sum()) for yi in inside]

    assert set(areas(0.0)) == {400}
    zoomed = areas(0.25)                             # side 20 / s, s in [0.8, 1.25]: area 256 .. 625
    assert len(zoomed) > 10 and 240 <= min(zoomed) < 360 and 440 < max(zoomed) <= 650
    plain = CropSampler([Region(img, lab)], crop=32, augment=False, seed=1).sample(8)
    again = CropSampler([Region(img, lab)], crop=32, augment=False, seed=1, zoom=0.5).sample(8)
    assert all(np.array_equal(a, b) for a, b in zip(plain, again))      # zoom is an augmentation: off with augment


def test_sampler_needs_labels():
    with pytest.raises(ValueError, match="labeled"):
        CropSampler([Region(np.zeros((8, 8)), np.zeros((8, 8)))])
