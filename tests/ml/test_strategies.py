"""Query strategies on score arrays whose right answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from ml.active.diversity import typicality
from ml.active.scores import PatchScores
from ml.active.strategies import NEEDS_MC, STRATEGIES, describe, select


def make_scores(n: int = 6, emb: np.ndarray | None = None, bald=None, **arrays) -> PatchScores:
    base = dict(entropy=np.zeros(n), least_confidence=np.zeros(n), margin=np.ones(n), fg_fraction=np.zeros(n))
    base.update({k: np.asarray(v, float) for k, v in arrays.items()})
    if emb is None:
        emb = np.arange(n, dtype=float)[:, None] * np.ones((1, 4))
    return PatchScores(embeddings=emb, bald=bald, **base)


def clusters(centers: np.ndarray, per: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``per`` points around each center; returns (points, cluster id per point)."""
    rng = np.random.default_rng(seed)
    pts = np.concatenate([c + spread * rng.standard_normal((per, centers.shape[1])) for c in centers])
    return pts, np.repeat(np.arange(len(centers)), per)


def test_uncertainty_strategies_pick_known_maxima():
    s = make_scores(5, entropy=[0.1, 0.9, 0.3, 0.8, 0.2], least_confidence=[0.4, 0.0, 0.45, 0.1, 0.3],
                    margin=[0.9, 0.1, 0.5, 0.05, 0.6])
    assert select("entropy", s, 2)[0] == [1, 3]
    assert select("least_confidence", s, 2)[0] == [2, 0]
    idx, sc = select("margin", s, 2)
    assert idx == [3, 1] and sc == pytest.approx([0.95, 0.9])


def test_bald_follows_disagreement_not_entropy():
    s = make_scores(4, entropy=[0.9, 0.2, 0.5, 0.1], bald=[0.0, 0.6, 0.1, 0.3])
    assert select("bald", s, 2)[0] == [1, 3]
    with pytest.raises(ValueError, match="mc_passes"):
        select("bald", make_scores(4), 2)


def test_random_is_seeded_and_distinct():
    s = make_scores(50)
    a, b, c = select("random", s, 10, seed=1), select("random", s, 10, seed=1), select("random", s, 10, seed=2)
    assert a == b and a[0] != c[0]
    assert len(set(a[0])) == 10


def test_kmeans_picks_one_per_well_separated_cluster():
    centers = np.array([[0, 0, 0], [50, 0, 0], [0, 50, 0], [0, 0, 50]], float)
    emb, cid = clusters(centers, per=15, spread=1.0)
    idx, sc = select("kmeans", make_scores(len(emb), emb=emb), 4, seed=0)
    assert sorted(cid[idx]) == [0, 1, 2, 3]
    assert sum(sc) == pytest.approx(1.0)
    # the pick is the most central member of its cluster
    for i in idx:
        members = emb[cid == cid[i]]
        d = np.linalg.norm(members - members.mean(0), axis=1)
        assert np.linalg.norm(emb[i] - members.mean(0)) <= np.sort(d)[2] + 1e-9


def test_typiclust_takes_the_densest_member_of_the_largest_uncovered_clusters():
    centers = np.array([[0, 0], [50, 0], [0, 50], [50, 50]], float)
    emb, cid = clusters(centers, per=12, spread=1.0, seed=4)
    keep = np.ones(len(emb), bool)
    keep[np.flatnonzero(cid == 2)[:4]] = False       # blob sizes 12, 12, 8, 4
    keep[np.flatnonzero(cid == 3)[:8]] = False
    emb, cid = np.vstack([emb[keep], [[50, 8]]]), np.append(cid[keep], 1)   # an outlier joins blob 1
    labeled = emb[cid == 0][:1]                      # blob 0 is covered by a labeled patch
    idx, sc = select("typiclust", make_scores(len(emb), emb=emb), 3, seed=0, labeled_embeddings=labeled)
    assert list(cid[idx]) == [1, 2, 3]               # uncovered blobs, the largest first
    assert len(emb) - 1 not in idx                   # never the outlier
    for i, score in zip(idx, sc):                    # the densest member of its blob
        members = np.flatnonzero(cid == cid[i])
        assert members[int(np.argmax(typicality(emb[members])))] == i
        assert score == pytest.approx(typicality(emb[members]).max())
    with pytest.raises(ValueError, match="dimension"):
        select("typiclust", make_scores(len(emb), emb=emb), 2, labeled_embeddings=np.zeros((1, 3)))


def test_typiclust_picks_distinct_patches_beyond_the_clusters():
    emb, _ = clusters(np.array([[0.0, 0.0], [30.0, 0.0]]), per=5, spread=1.0)
    idx, sc = select("typiclust", make_scores(len(emb), emb=emb), 10, seed=1)
    assert sorted(idx) == list(range(10)) and all(v > 0 for v in sc)


def test_coreset_starts_farthest_from_labeled_set():
    emb = np.array([[1, 0], [2, 0], [10, 0], [0, 3], [-6, 0]], float)
    labeled = np.zeros((1, 2))
    idx, sc = select("coreset", make_scores(5, emb=emb), 3, labeled_embeddings=labeled)
    assert idx[0] == 2 and sc[0] == pytest.approx(10.0)
    assert idx[1] == 4 and sc[1] == pytest.approx(6.0)
    assert idx[2] == 3 and sc[2] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="dimension"):
        select("coreset", make_scores(5, emb=emb), 2, labeled_embeddings=np.zeros((1, 3)))


def test_coreset_without_labels_covers_clusters():
    centers = np.array([[0, 0], [40, 0], [0, 40]], float)
    emb, cid = clusters(centers, per=10, spread=0.5, seed=3)
    idx, sc = select("coreset", make_scores(len(emb), emb=emb), 3)
    assert sorted(cid[idx]) == [0, 1, 2]
    assert idx[0] == int(np.argmin(np.linalg.norm(emb - emb.mean(0), axis=1))) and sc[0] == 0.0
    assert sc[1] >= sc[2] > 20.0


def _duplicates_plus_diverse(seed: int = 0):
    """8 near-identical top-uncertain patches, 6 distinct fairly uncertain ones, 60 easy ones."""
    rng = np.random.default_rng(seed)
    dup = np.array([[20.0, 20.0, 0.0]]) + 0.01 * rng.standard_normal((8, 3))
    diverse = rng.uniform(-30, 30, (6, 3)) + np.array([0, 0, 60.0])
    easy = rng.uniform(-30, 30, (60, 3))
    emb = np.concatenate([dup, diverse, easy])
    u = np.concatenate([0.95 + 0.001 * np.arange(8), np.linspace(0.7, 0.8, 6), rng.uniform(0.0, 0.1, 60)])
    return emb, u


@pytest.mark.parametrize("name, field", [("hybrid", "entropy"), ("entropy_diverse", "entropy"),
                                         ("hybrid", "bald"), ("bald_diverse", "bald")])
def test_diverse_strategies_avoid_near_duplicates_but_prefer_uncertain(name, field):
    emb, u = _duplicates_plus_diverse()
    n = len(u)
    other = np.zeros(n)
    s = make_scores(n, emb=emb, entropy=u if field == "entropy" else other, bald=u if field == "bald" else None)
    for k in (3, 5):
        idx, sc = select(name, s, k, seed=0)
        assert len(idx) == k
        assert sum(i < 8 for i in idx) == 1  # exactly one of the duplicate group
        assert all(i < 14 for i in idx)  # never an easy patch while uncertain ones remain
        assert idx[0] < 8 and sc == sorted(sc, reverse=True)
        d = np.linalg.norm(emb[idx][:, None] - emb[idx][None], axis=-1) + np.eye(k) * 1e9
        assert d.min() > 1.0
    # plain entropy, for contrast, takes k copies of the same thing
    assert all(i < 8 for i in select("entropy" if field == "entropy" else "bald", s, 3)[0])


def test_hybrid_uses_bald_when_available():
    emb, u = _duplicates_plus_diverse()
    n = len(u)
    s = make_scores(n, emb=emb, entropy=u[::-1], bald=u)
    assert all(i < 14 for i in select("hybrid", s, 3)[0])


def test_every_strategy_returns_k_distinct_valid_indices():
    rng = np.random.default_rng(0)
    n = 40
    s = make_scores(n, emb=rng.standard_normal((n, 8)), entropy=rng.random(n), least_confidence=rng.random(n),
                    margin=rng.random(n), bald=rng.random(n))
    for name in STRATEGIES:
        idx, sc = select(name, s, 7, seed=1)
        assert len(idx) == len(sc) == 7 and len(set(idx)) == 7, name
        assert all(0 <= i < n for i in idx), name
        assert select(name, s, 100)[0] and len(select(name, s, 100)[0]) == n, name
        assert select(name, s, 0) == ([], []), name


def test_registry_describe_and_errors():
    names = [n for n, _ in describe()]
    assert names == list(STRATEGIES)
    assert {"random", "entropy", "least_confidence", "margin", "bald", "kmeans", "coreset", "hybrid"} <= set(names)
    assert NEEDS_MC <= set(STRATEGIES) and "bald" in NEEDS_MC and "hybrid" not in NEEDS_MC
    assert all(isinstance(d, str) and d for _, d in describe())
    with pytest.raises(ValueError, match="valid names: random"):
        select("nope", make_scores(3), 1)
    with pytest.raises(ValueError, match="k must be"):
        select("entropy", make_scores(3), -1)
    with pytest.raises(TypeError, match="PatchScores"):
        select("entropy", {"entropy": [1, 2]}, 1)


def test_patch_scores_validates_shapes():
    with pytest.raises(ValueError, match="margin"):
        PatchScores(entropy=np.zeros(3), least_confidence=np.zeros(3), margin=np.zeros(2),
                    fg_fraction=np.zeros(3), embeddings=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="embeddings"):
        PatchScores(entropy=np.zeros(3), least_confidence=np.zeros(3), margin=np.zeros(3),
                    fg_fraction=np.zeros(3), embeddings=np.zeros(3))


def test_balanced_takes_half_from_patches_with_and_without_predicted_structure():
    n = 40
    rng = np.random.default_rng(0)
    fg = np.where(np.arange(n) < 10, 0.3, 0.0)              # 10 patches show structure, 30 do not
    lc = rng.random(n) * 0.1
    lc[:10] += 0.5                                          # ... and they are far more uncertain
    s = make_scores(n, emb=rng.standard_normal((n, 4)), least_confidence=lc, fg_fraction=fg)
    picks, scores = select("balanced", s, 8)
    assert len(set(picks)) == 8
    assert sum(p < 10 for p in picks) == 4                  # least confidence alone would take 8 of them
    assert select("least_confidence", s, 8)[0] == sorted(range(10), key=lambda i: -lc[i])[:8]
    assert scores == sorted(scores, reverse=True)


def test_balanced_on_a_dense_structure_splits_at_the_median_and_fills_short_strata():
    n = 30
    rng = np.random.default_rng(1)
    fg = np.linspace(0.05, 0.6, n)                          # every patch holds foreground (membranes)
    lc = np.linspace(1.0, 0.0, n)                           # the sparse ones are the most uncertain
    s = make_scores(n, emb=rng.standard_normal((n, 4)), least_confidence=lc, fg_fraction=fg)
    picks, _ = select("balanced", s, 6)
    assert sum(fg[p] > np.median(fg) for p in picks) == 3
    few = make_scores(n, emb=rng.standard_normal((n, 4)), least_confidence=lc,
                      fg_fraction=np.where(np.arange(n) < 2, 0.5, 0.0))
    picks, _ = select("balanced", few, 6)                   # only 2 patches with structure: 4 from the rest
    assert len(set(picks)) == 6 and {0, 1} <= set(picks)


def test_balanced_bald_asks_where_the_weights_disagree_inside_each_half():
    n = 40
    rng = np.random.default_rng(2)
    fg = np.where(np.arange(n) < 20, 0.3, 0.0)              # 20 patches show structure, 20 do not
    lc = np.where(np.arange(n) % 10 < 5, 0.6, 0.1)          # rims: 0-4 and 20-24 look ambiguous ...
    bald = np.where(np.arange(n) % 10 >= 5, 0.5, 0.01)      # ... the weights disagree on 5-9 and 25-29 etc.
    s = make_scores(n, emb=rng.standard_normal((n, 4)), least_confidence=lc, fg_fraction=fg, bald=bald)
    picks, scores = select("balanced_bald", s, 6)
    assert sum(p < 20 for p in picks) == 3 and all(bald[p] == 0.5 for p in picks)
    assert all(lc[p] == 0.6 for p in select("balanced", s, 6)[0])
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ValueError, match="needs BALD"):
        select("balanced_bald", make_scores(n, fg_fraction=fg), 6)


def test_weighted_balanced_follows_the_doubt_but_keeps_a_quarter_for_each_stratum():
    n = 60
    rng = np.random.default_rng(3)
    fg = np.where(np.arange(n) < 30, 0.3, 0.0)              # 30 patches show structure, 30 do not
    emb = rng.standard_normal((n, 4))
    doubt_in_fg = np.where(np.arange(n) < 30, 0.6, 0.1) + rng.random(n) * 0.01   # every top-8 patch has structure
    picks, scores = select("weighted_balanced", make_scores(n, emb=emb, least_confidence=doubt_in_fg,
                                                            fg_fraction=fg), 8)
    assert sum(p < 30 for p in picks) == 6 and len(set(picks)) == 8     # 75 %, not 100 % (LC) nor 50 % (balanced)
    assert scores == sorted(scores, reverse=True)
    mixed = np.where(np.arange(n) % 2 == 0, 0.6, 0.1) + rng.random(n) * 0.01   # the top 8 split 5 : 3
    mixed[[0, 2, 4, 6, 8, 31, 33, 35]] += 1.0
    picks, _ = select("weighted_balanced", make_scores(n, emb=emb, least_confidence=mixed, fg_fraction=fg), 8)
    assert sum(p < 30 for p in picks) == 5
    assert sum(p < 30 for p in select("balanced", make_scores(n, emb=emb, least_confidence=mixed,
                                                                 fg_fraction=fg), 8)[0]) == 4


def test_default_strategy_is_registered_and_model_free_strategies_are_not_it():
    from ml.active.strategies import DEFAULT_STRATEGY

    assert DEFAULT_STRATEGY in STRATEGIES and DEFAULT_STRATEGY not in NEEDS_MC
    assert DEFAULT_STRATEGY in dict(describe())


def test_weighted_balanced_cover_also_asks_for_confident_objects_unlike_the_labels():
    n = 60
    rng = np.random.default_rng(4)
    fg = np.where(np.arange(n) < 30, 0.3, 0.0)              # 30 patches show structure, 30 do not
    emb = rng.standard_normal((n, 4))
    emb[25:30] += 20.0                                      # 25-29: structure of a kind nothing labeled shows ...
    lc = np.where(np.arange(n) < 25, 0.6, 0.1) + rng.random(n) * 0.01
    lc[25:30] = 0.02                                        # ... and the model is sure of it
    labeled = rng.standard_normal((5, 4))
    s = make_scores(n, emb=emb, least_confidence=lc, fg_fraction=fg)
    plain, _ = select("weighted_balanced", s, 8, labeled_embeddings=labeled)
    picks, scores = select("weighted_balanced_cover", s, 8, labeled_embeddings=labeled)
    assert not any(25 <= p < 30 for p in plain)
    assert sum(p < 30 for p in picks) == sum(p < 30 for p in plain) == 6    # the strata's shares are unchanged
    assert sum(25 <= p < 30 for p in picks) == 2 and len(set(picks)) == 8   # a third of the six by coverage
    assert scores == sorted(scores, reverse=True)
    assert len(set(select("weighted_balanced_cover", s, 8)[0])) == 8         # no labeled patches yet: still 8


def test_off_rim_balanced_follows_doubt_away_from_outlines_not_least_confidence():
    n = 60
    rng = np.random.default_rng(5)
    fg = np.where(np.arange(n) < 30, 0.3, 0.0)
    emb = rng.standard_normal((n, 4))
    lc = np.where(np.arange(n) < 30, 0.6, 0.1) + rng.random(n) * 0.01      # outlines: every structure patch
    off = np.where(np.arange(n) < 30, 0.01, 0.02) + rng.random(n) * 0.001
    off[[40, 45, 50, 55, 56, 57]] = 0.5                                      # doubt away from any outline
    s = make_scores(n, emb=emb, least_confidence=lc, fg_fraction=fg, off_rim=off)
    picks, scores = select("off_rim_balanced", s, 8)
    assert sum(p < 30 for p in select("weighted_balanced", s, 8)[0]) == 6
    assert sum(p < 30 for p in picks) == 2                      # the floor keeps a quarter on structure
    assert {40, 45, 50, 55, 56, 57} <= set(picks) and scores == sorted(scores, reverse=True)
    plain = make_scores(n, emb=emb, least_confidence=lc, fg_fraction=fg)    # not scored by score_patches
    assert select("off_rim_balanced", plain, 8) == select("weighted_balanced", plain, 8)
