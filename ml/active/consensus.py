"""Candidates scored as the app reads a prediction: in z consensus with the slices above and below.

Why: the app shows, segments and exports a slice mixed with its neighbours (``ml.z_consensus``,
v30), which already removes most one-slice false objects. Uncertainty measured on the slice alone
spends labels on doubts the consensus settles, and misses the ones it creates (a pixel the slices
disagree on). Here a candidate's class probabilities are mixed with the same patch on the slices
above and below before entropy, least confidence, margin and the foreground share are taken; its
embedding and BALD stay its own slice's (what the model sees, and what its weights disagree on).

Memory stays bounded on any volume: the patches are predicted column by column (one (y, x), its
slices upwards) and a slice's probabilities are dropped as soon as no waiting candidate needs them.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from ml.z_consensus import check_weight, neighbours, slice_consensus

from .pool import Patch


def column_items(patches: Sequence[Patch], depth: int) -> list[Patch]:
    """Every candidate and its z neighbours, once each, column by column (y, x, then z upwards)."""
    items = set(patches)
    for p in patches:
        items.update(Patch(z, p.y, p.x, p.size) for z in range(*neighbours(p.z, depth)))
    return sorted(items, key=lambda p: (p.y, p.x, p.size, p.z))


class ConsensusMixer:
    """Takes predicted patches one by one (``add``) and hands back each candidate, mixed, once its
    neighbours have all arrived."""

    def __init__(self, patches: Sequence[Patch], depth: int, weight: float):
        self.weight = check_weight(weight)
        self._stacks: list[tuple[list[Patch], int]] = []   # candidate -> (its slices, its own place in them)
        self._waiting: dict[Patch, list[int]] = {}
        self._uses: Counter = Counter()
        self._cache: dict[Patch, np.ndarray] = {}
        self.peak = 0                                       # most patches held at once (bounded memory)
        for i, p in enumerate(patches):
            z0, z1 = neighbours(p.z, depth)
            stack = [Patch(z, p.y, p.x, p.size) for z in range(z0, z1)]
            self._stacks.append((stack, p.z - z0))
            for q in stack:
                self._waiting.setdefault(q, []).append(i)
                self._uses[q] += 1

    def add(self, patch: Patch, prob: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Keep ``patch``'s probabilities [C, H, W]; return (candidate index, mixed [C, H, W]) of those now complete."""
        if not self._uses[patch]:
            return []
        self._cache[patch] = np.asarray(prob, np.float32)
        self.peak = max(self.peak, len(self._cache))
        done = []
        for i in self._waiting.pop(patch, []):
            stack, at = self._stacks[i]
            if all(q in self._cache for q in stack):
                done.append((i, slice_consensus(np.stack([self._cache[q] for q in stack]), at, 0, self.weight, axis=0)))
                self._release(stack)
        return done

    def _release(self, stack: list[Patch]) -> None:
        for q in stack:
            self._uses[q] -= 1
            if self._uses[q] <= 0:
                self._cache.pop(q, None)

    @property
    def pending(self) -> int:
        """Patches still held (0 once every candidate came back)."""
        return len(self._cache)
