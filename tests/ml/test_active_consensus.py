"""Candidates scored in z consensus: the scores of the probabilities the app shows, in bounded memory."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.active.consensus import ConsensusMixer, column_items
from ml.active.pool import Patch, candidate_pool
from ml.active.scoring import pixel_scores, score_patches, volume_reader
from ml.z_consensus import smooth_z


def _slice_probs(model, reader, patches: list[Patch]) -> dict[Patch, np.ndarray]:
    """Each patch's class probabilities from a plain forward pass of the patch alone."""
    with torch.inference_mode():
        x = torch.from_numpy(np.stack([reader(p) for p in patches])[:, None].astype(np.float32))
        prob = torch.softmax(model.eval()(x), 1).numpy()
    return dict(zip(patches, prob))


def test_consensus_scores_are_those_of_the_mixed_probabilities(em_volume, trained_scorer):
    read = volume_reader(em_volume)
    depth = em_volume.shape[0]
    patches = [p for p in candidate_pool(em_volume.shape, size=32, stride=32) if p.z in (0, 2, 5)][:24]
    probs = _slice_probs(trained_scorer, read, [Patch(z, p.y, p.x, p.size) for p in patches for z in range(depth)])
    column = {p: np.stack([probs[Patch(z, p.y, p.x, p.size)] for z in range(depth)]) for p in patches}
    mixed = np.stack([smooth_z(column[p], 0.25, axis=0)[p.z] for p in patches])
    expected = {k: v.numpy() for k, v in pixel_scores(torch.from_numpy(mixed)).items()}
    got = score_patches(trained_scorer, read, patches, mc_passes=2, batch_size=5, device="cpu", z_weight=0.25)
    alone = score_patches(trained_scorer, read, patches, mc_passes=0, batch_size=5, device="cpu")
    for key in ("entropy", "least_confidence", "margin", "fg_fraction"):
        assert np.allclose(getattr(got, key), expected[key], atol=1e-5), key
    assert np.abs(got.least_confidence - alone.least_confidence).max() > 1e-3   # the slices do differ
    assert np.allclose(got.embeddings, alone.embeddings, atol=1e-5)             # its own slice's features
    assert got.bald.shape == (len(patches),) and np.all(got.bald >= 0)


def test_consensus_scores_keep_the_patch_order_and_duplicates(em_volume, trained_scorer):
    read = volume_reader(em_volume)
    patches = candidate_pool(em_volume.shape, size=32, stride=32)[:40]
    a = score_patches(trained_scorer, read, patches, mc_passes=0, batch_size=8, device="cpu", z_weight=0.25)
    order = list(np.random.default_rng(1).permutation(len(patches))) + [3]
    b = score_patches(trained_scorer, read, [patches[i] for i in order], mc_passes=0, batch_size=3, device="cpu",
                      z_weight=0.25)
    assert np.allclose(a.least_confidence[order], b.least_confidence, atol=1e-6)
    assert np.allclose(a.embeddings[order], b.embeddings, atol=1e-5)


def test_the_mixer_hands_each_candidate_back_once_in_bounded_memory():
    depth = 40
    patches = [Patch(z, y, x, 16) for z in range(depth) for y in (0, 16) for x in (0, 16, 32) if (z + x) % 3]
    mixer = ConsensusMixer(patches, depth, 0.25)
    back = [i for item in column_items(patches, depth) for i, _ in mixer.add(item, np.full((2, 16, 16), item.z))]
    assert sorted(back) == list(range(len(patches)))
    assert mixer.pending == 0 and mixer.peak <= 3          # a column's last three slices, never the volume
    shuffled = ConsensusMixer(patches, depth, 0.25)
    items = column_items(patches, depth)
    got = {}
    for j in np.random.default_rng(0).permutation(len(items)):
        got.update(shuffled.add(items[j], np.full((2, 16, 16), float(items[j].z), np.float32)))
    assert sorted(got) == list(range(len(patches)))
    i = next(i for i, p in enumerate(patches) if 0 < p.z < depth - 1)
    assert np.allclose(got[i], patches[i].z)                # [w, 1 - 2w, w] of z - 1, z, z + 1 is z
    end = next(i for i, p in enumerate(patches) if p.z == 0)
    assert np.allclose(got[end], 0.25 * 1.0)                # the first slice counts as its own missing neighbour


def test_consensus_needs_a_volume_reader_and_a_weight_below_half(em_volume, trained_scorer):
    with pytest.raises(TypeError, match="VolumeReader"):
        score_patches(trained_scorer, lambda p: np.zeros((32, 32), np.float32), [Patch(0, 0, 0, 32)],
                      mc_passes=0, z_weight=0.25)
    with pytest.raises(ValueError, match=r"\[0, 0.5\)"):
        score_patches(trained_scorer, volume_reader(em_volume), [Patch(0, 0, 0, 32)], mc_passes=0, z_weight=0.5)
