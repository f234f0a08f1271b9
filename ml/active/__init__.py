"""Active learning: candidate pool -> per-patch scores -> strategy picks k patches to label.

``pool`` and ``strategies`` are numpy-only; ``scoring`` (torch) is imported on demand:
``from ml.active.scoring import score_patches, volume_reader``.
"""
from .pool import Patch, candidate_pool
from .scores import PatchScores
from .strategies import NEEDS_LABELED, NEEDS_MC, STRATEGIES, describe, select

__all__ = ["Patch", "candidate_pool", "PatchScores", "STRATEGIES", "NEEDS_LABELED", "NEEDS_MC", "describe", "select"]
