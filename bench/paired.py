"""Per-seed paired differences reduced to what a decision reads: mean, standard error, seeds up.

Every comparison in docs/BENCHMARKS.md pairs two recipes on the same draws, so the spread of the
differences, not of either side, says how far a gain is from noise. One function answers it, so the
first-model pairs (``bench.initial_pair``) and the pooled active-learning gains (``bench.al_pool``)
cannot drift apart (sample sd, ddof 1, over sqrt(n) seeds).
"""
from __future__ import annotations

import numpy as np


def paired_stats(diffs) -> dict:
    """``{"n", "mean", "sd", "se", "up"}`` of per-seed differences (arm - base); sd and se need 2 or more."""
    d = np.asarray(list(diffs), dtype=float)
    if d.size < 2:
        raise ValueError(f"a paired difference needs 2 or more seeds, got {d.size}")
    sd = float(d.std(ddof=1))
    return {"n": int(d.size), "mean": float(d.mean()), "sd": sd, "se": sd / float(np.sqrt(d.size)),
            "up": int((d > 0).sum())}
