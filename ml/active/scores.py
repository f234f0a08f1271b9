"""Per-patch scores: the one object that scoring produces and every strategy consumes.

Kept free of torch so strategies (and their tests) run on plain numpy arrays.
Conventions: entropy and BALD are normalised by log(C), so they lie in [0, 1] for any
class count; least_confidence = 1 - max p; margin = p(top1) - p(top2) (small = uncertain).
Each is the mean over the patch's pixels. ``off_rim`` is least confidence with the pixels near a
predicted boundary counted as sure (``ml.active.scoring.RIM``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _vector(name: str, value: Any, n: int | None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = f"({n},)" if n is not None else "(N,)"
        raise ValueError(f"PatchScores.{name} must have shape {want}, got {arr.shape}")
    return arr


@dataclass
class PatchScores:
    """Uncertainty, foreground fraction and embedding per candidate patch (arrays of length N).

    ``bald`` is None when no MC-dropout passes were run; ``off_rim`` when the scores were not made by
    ``score_patches`` (it falls back to least confidence). ``patches`` (optional) are the candidates the
    rows refer to, in the same order.
    """

    entropy: np.ndarray
    least_confidence: np.ndarray
    margin: np.ndarray
    fg_fraction: np.ndarray
    embeddings: np.ndarray
    bald: np.ndarray | None = None
    off_rim: np.ndarray | None = None
    patches: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.entropy = _vector("entropy", self.entropy, None)
        n = self.entropy.shape[0]
        self.least_confidence = _vector("least_confidence", self.least_confidence, n)
        self.margin = _vector("margin", self.margin, n)
        self.fg_fraction = _vector("fg_fraction", self.fg_fraction, n)
        if self.bald is not None:
            self.bald = _vector("bald", self.bald, n)
        self.off_rim = self.least_confidence if self.off_rim is None else _vector("off_rim", self.off_rim, n)
        emb = np.asarray(self.embeddings, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] != n:
            raise ValueError(f"PatchScores.embeddings must have shape ({n}, D), got {emb.shape}")
        self.embeddings = emb
        if self.patches and len(self.patches) != n:
            raise ValueError(f"PatchScores.patches has {len(self.patches)} entries for {n} score rows")

    def __len__(self) -> int:
        return int(self.entropy.shape[0])

    @classmethod
    def unscored(cls, patches: list) -> "PatchScores":
        """Rows for ``patches`` that no model scored (zeros, no features): all the ``random`` strategy reads, so
        a random round needs no forward pass."""
        zero = np.zeros(len(patches))
        return cls(zero, zero, zero, zero, np.zeros((len(patches), 0)), patches=list(patches))

    @property
    def has_bald(self) -> bool:
        return self.bald is not None

    def uncertainty(self) -> np.ndarray:
        """The best available uncertainty: BALD when MC passes were run, else entropy."""
        return self.bald if self.bald is not None else self.entropy

    def row(self, i: int) -> dict:
        """Scores of patch ``i`` as a JSON-able dict (for tables in the UI)."""
        out = {
            "entropy": float(self.entropy[i]),
            "least_confidence": float(self.least_confidence[i]),
            "margin": float(self.margin[i]),
            "fg_fraction": float(self.fg_fraction[i]),
            "bald": None if self.bald is None else float(self.bald[i]),
            "off_rim": float(self.off_rim[i]),
        }
        return out
