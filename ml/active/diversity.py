"""Diversity selection on patch embeddings: k-means representatives and greedy k-center.

Uncertainty alone picks k near-copies of the same confusing structure; these pick patches
that cover the embedding space, so one labeled batch teaches the model several things.
Distances are Euclidean on the raw embeddings (pooled U-Net bottleneck features).
"""
from __future__ import annotations

import warnings

import numpy as np

#: Rows of the pairwise-distance block computed at once (bounds memory to CHUNK x N floats).
CHUNK = 2048


def _as_matrix(emb: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(emb, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2D (N, D) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def min_distances(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Distance from each point to its nearest center (inf when there are no centers)."""
    out = np.full(points.shape[0], np.inf)
    sq_p = (points**2).sum(1)
    for s in range(0, centers.shape[0], CHUNK):
        c = centers[s:s + CHUNK]
        d2 = sq_p[:, None] - 2.0 * points @ c.T + (c**2).sum(1)[None, :]
        out = np.minimum(out, d2.min(axis=1))
    return np.sqrt(np.maximum(out, 0.0))


def k_center_greedy(emb: np.ndarray, k: int, labeled: np.ndarray | None = None) -> tuple[list[int], list[float]]:
    """Greedy k-center (core-set, Sener & Savarese 2018): repeatedly take the farthest point.

    Distances start from ``labeled`` embeddings when given; with none, the first pick is the
    point nearest the pool mean (a representative start, deterministic). Returns the picks and,
    for each, its distance to the nearest already-covered point at the time it was taken.
    """
    emb = _as_matrix(emb, "embeddings")
    n = emb.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return [], []
    picks: list[int] = []
    scores: list[float] = []
    if labeled is not None and len(labeled):
        lab = _as_matrix(labeled, "labeled_embeddings")
        if lab.shape[1] != emb.shape[1]:
            raise ValueError(
                f"labeled_embeddings have dimension {lab.shape[1]} but candidate embeddings have {emb.shape[1]}"
            )
        dist = min_distances(emb, lab)
    else:
        first = int(np.argmin(min_distances(emb, emb.mean(0, keepdims=True))))
        picks, scores = [first], [0.0]
        dist = min_distances(emb, emb[first:first + 1])
        dist[first] = -1.0
    while len(picks) < k:
        i = int(np.argmax(dist))
        picks.append(i)
        scores.append(float(dist[i]))
        dist = np.minimum(dist, min_distances(emb, emb[i:i + 1]))
        dist[picks] = -1.0
    return picks, scores


def kmeans_representatives(
    emb: np.ndarray, k: int, seed: int = 0, weights: np.ndarray | None = None, n_init: int = 4,
    pick: str = "nearest",
) -> tuple[list[int], list[float]]:
    """k-means (optionally weighted) on embeddings; one distinct patch per cluster.

    ``pick="nearest"``: the patch nearest the centroid (a representative); ``"heaviest"``:
    the cluster member with the largest weight (e.g. the most uncertain). Clusters are
    visited heaviest first (sum of member weights, or member count); each pick's score is
    its cluster's share of the total weight.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    if pick not in ("nearest", "heaviest"):
        raise ValueError(f"pick must be 'nearest' or 'heaviest', got {pick!r}")
    emb = _as_matrix(emb, "embeddings")
    n = emb.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return [], []
    w = np.ones(n) if weights is None else np.clip(np.asarray(weights, dtype=np.float64), 1e-12, None)
    if k == n:
        order = np.argsort(-w, kind="stable")
        return [int(i) for i in order], [float(w[i] / w.sum()) for i in order]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k
        km = KMeans(n_clusters=k, n_init=n_init, random_state=int(seed)).fit(emb, sample_weight=w)
    mass = np.bincount(km.labels_, weights=w, minlength=k)
    taken = np.zeros(n, dtype=bool)
    picks: list[int] = []
    scores: list[float] = []
    for c in np.argsort(-mass, kind="stable"):
        members = (km.labels_ == c) & ~taken
        if pick == "heaviest" and members.any():
            i = int(np.argmax(np.where(members, w, -np.inf)))
        else:  # nearest; also the fallback for a cluster left empty by duplicate points
            d = np.linalg.norm(emb - km.cluster_centers_[c], axis=1)
            d[taken] = np.inf
            i = int(np.argmin(d))
        taken[i] = True
        picks.append(i)
        scores.append(float(mass[c] / mass.sum()))
    return picks, scores


def typicality(emb: np.ndarray, neighbours: int = 20) -> np.ndarray:
    """Inverse mean distance of each point to its ``neighbours`` nearest others (density)."""
    n = emb.shape[0]
    if n < 2:
        return np.ones(n)
    kk = min(int(neighbours), n - 1)
    sq = (emb**2).sum(1)
    d2 = np.maximum(sq[:, None] - 2.0 * emb @ emb.T + sq[None, :], 0.0)
    np.fill_diagonal(d2, np.inf)
    near = np.sqrt(np.partition(d2, kk - 1, axis=1)[:, :kk])
    return 1.0 / (near.mean(1) + 1e-12)


def typical_representatives(
    emb: np.ndarray, k: int, seed: int = 0, labeled: np.ndarray | None = None, neighbours: int = 20,
    n_init: int = 4,
) -> tuple[list[int], list[float]]:
    """TypiClust (Hacohen, Dekel & Weinshall 2022): a cold-start pick for tiny label budgets.

    Cluster candidates and labeled patches together into ``k + len(labeled)`` groups; take
    the largest groups that hold no labeled patch yet, and from each its most *typical*
    member (densest neighbourhood inside the group), not an outlier nor a centroid that may
    lie between modes. At a budget of a few dozen patches, typical patches teach more than
    uncertain ones, which a model that has seen almost nothing cannot yet rank. Scores are
    the picks' typicality.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    emb = _as_matrix(emb, "embeddings")
    n = emb.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return [], []
    lab = np.zeros((0, emb.shape[1])) if labeled is None or not len(labeled) else _as_matrix(labeled, "labeled_embeddings")
    if lab.shape[1] != emb.shape[1]:
        raise ValueError(f"labeled_embeddings have dimension {lab.shape[1]} but candidate embeddings have {emb.shape[1]}")
    clusters = min(n, k + len(lab))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than clusters
        km = KMeans(n_clusters=clusters, n_init=n_init, random_state=int(seed)).fit(np.vstack([emb, lab]))
    groups, covered = km.labels_[:n], km.labels_[n:]
    labeled_count = np.bincount(covered, minlength=clusters).astype(np.int64)
    taken = np.zeros(n, dtype=bool)
    picks: list[int] = []
    scores: list[float] = []
    while len(picks) < k:
        free = np.bincount(groups[~taken], minlength=clusters)
        # uncovered groups first, then the least covered; the largest first among those
        cover = np.where(free > 0, labeled_count, np.iinfo(np.int64).max)
        c = int(np.lexsort((-free, cover))[0])
        members = np.flatnonzero((groups == c) & ~taken)
        typ = typicality(emb[members], neighbours)
        best = int(np.argmax(typ))
        picks.append(int(members[best]))
        scores.append(float(typ[best]))
        taken[members[best]] = True
        labeled_count[c] += 1
    return picks, scores
