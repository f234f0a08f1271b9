"""ilastik-style baseline: a random forest on multiscale filter features, per pixel.

Features are skimage's ``multiscale_basic_features`` (Gaussian intensity, gradient
magnitude and Hessian eigenvalues at sigmas 0.7..16 px), close to ilastik's default
pixel-classification set. Patch features are computed on a window padded with real image
context from the pool half only, so the baseline sees nothing of the test half but the
pixels it is scored on.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
from skimage.feature import multiscale_basic_features
from sklearn.ensemble import RandomForestClassifier

from .al_protocol import BenchData, Protocol
from .al_scores import heldout_scores

SIGMA_MIN, SIGMA_MAX = 0.7, 16.0
#: Context (px) around a patch so the largest filters do not see an artificial border.
CONTEXT = int(3 * SIGMA_MAX)


def features(image: np.ndarray) -> np.ndarray:
    """(H, W, F) float32 filter responses of a normalised 2D image."""
    f = multiscale_basic_features(image, intensity=True, edges=True, texture=True,
                                  sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    return f.astype(np.float32, copy=False)


def patch_samples(data: BenchData, patch) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, F) features and (pixels,) 0/1 labels of one pool patch."""
    z, y, x, s = patch.z, patch.y, patch.x, patch.size
    _, _, width = data.image.shape
    y0, x0 = max(0, y - CONTEXT), max(0, x - CONTEXT)
    y1, x1 = min(data.split_y, y + s + CONTEXT), min(width, x + s + CONTEXT)
    f = features(data.image[z, y0:y1, x0:x1])[y - y0:y - y0 + s, x - x0:x - x0 + s]
    return f.reshape(-1, f.shape[-1]), data.mask[z, y:y + s, x:x + s].ravel()


class RFBaseline:
    """Fit on labeled patches (features cached per patch), score on the test half's eval slices.

    Training pixels are sampled class-balanced (up to ``rf_max_pixels / 2`` per class), as an
    ilastik user paints both classes: on ~5 % mitochondria an unbalanced forest predicts
    almost no foreground (IoU 0.02-0.05 at 20-30 random patches in a trial run).
    """

    def __init__(self, data: BenchData, proto: Protocol, seed: int):
        self.data, self.proto, self.seed = replace(data, z_radius=0), proto, seed   # the forest reads one slice
        self._patch_cache: dict = {}
        self._test_cache: dict[int, np.ndarray] = {}

    def _samples(self, patches: Sequence) -> tuple[np.ndarray, np.ndarray]:
        for p in patches:
            if p not in self._patch_cache:
                self._patch_cache[p] = patch_samples(self.data, p)
        xs = np.concatenate([self._patch_cache[p][0] for p in patches])
        ys = np.concatenate([self._patch_cache[p][1] for p in patches])
        rng = np.random.default_rng([self.seed, len(patches)])
        per_class = self.proto.rf_max_pixels // 2
        idx = [rng.choice(w, min(per_class, len(w)), replace=False) for w in (np.flatnonzero(ys == c) for c in (0, 1))]
        idx = np.sort(np.concatenate(idx))
        return xs[idx], ys[idx]

    def fit(self, patches: Sequence) -> RandomForestClassifier:
        xs, ys = self._samples(patches)
        rf = RandomForestClassifier(n_estimators=self.proto.rf_trees, n_jobs=1, random_state=self.seed,
                                    min_samples_leaf=2)
        return rf.fit(xs, ys)

    def _test_features(self, image: np.ndarray) -> np.ndarray:
        key = image.__array_interface__["data"][0]  # eval slices are fixed views of one array
        if key not in self._test_cache:
            self._test_cache[key] = features(image)
        return self._test_cache[key]

    def scores(self, rf: RandomForestClassifier) -> dict[str, float]:
        """Test-half IoU (same eval slices as the U-Net); a forest that saw one class predicts it everywhere."""
        def predict(image: np.ndarray) -> np.ndarray:
            f = self._test_features(image)
            if len(rf.classes_) == 1:
                return np.full(image.shape, bool(rf.classes_[0]))
            return (rf.predict_proba(f.reshape(-1, f.shape[-1]))[:, 1] > 0.5).reshape(image.shape)

        return heldout_scores(predict, self.data)
