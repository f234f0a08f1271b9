"""How good is a model where nobody labeled? Quality estimates that do not flatter it.

Sparse labels sit where the expert painted: inside objects, far from boundaries, on easy
pixels. Foreground IoU on held-out strokes therefore measures the easy part of the problem
(the page once said 1.000 for a model whose true IoU was 0.169). Two estimates here look at
the whole volume instead, through the model's probabilities:

- ``expected``: the IoU the model would have if its probabilities were calibrated
  (soft TP / FP / FN counts over the volume's pixels);
- ``calibrated``: the same after histogram-binning recalibration on the held-out labels
  (each probability bin's foreground rate measured where labels exist, shrunk toward the
  bin's mean probability where they are few).

Both are computed from a ``ProbabilityHistogram`` accumulated slice by slice (bounded
memory for any volume size). ``bench/quality.py`` measures which one tracks the true IoU
against dense ground truth (docs/BENCHMARKS.md "Quality estimate"): on sparse strokes of any
style every estimate overstated, so ``estimate_quality`` gives a number only on a basis that
can check it (held-out fully labeled patches with foreground and boundaries) and otherwise
says why not.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ml.infer import predict_image
from ml.predicted_class import predicted_class

BINS = 20                    # probability bins over [0, 1]
PRIOR_PIXELS = 50.0          # calibration: a bin's measured rate counts as much as this many pixels of prior
BOUNDARY_PX = 6              # a held-out label is "at a boundary" within this many px of the other class
MIN_HELDOUT_FG = 500         # too thin below these ...
MIN_BOUNDARY = 200           # ... held-out boundary pixels ...
MIN_DENSE = 4096             # ... or pixels of fully labeled held-out regions (a 64 px patch)
DENSE_FRACTION = 0.9         # a region is fully labeled when its labels fill this much of their bounding box


def _bin(prob: np.ndarray) -> np.ndarray:
    return np.minimum((np.asarray(prob, np.float64) * BINS).astype(np.int64), BINS - 1)


@dataclass
class ProbabilityHistogram:
    """Pixel counts and probability sums per (predicted foreground?, probability bin) of one class.

    ``correct`` counts labeled pixels whose truth is the class (only filled from labels).
    """

    count: np.ndarray = field(default_factory=lambda: np.zeros((2, BINS)))
    psum: np.ndarray = field(default_factory=lambda: np.zeros((2, BINS)))
    positive: np.ndarray = field(default_factory=lambda: np.zeros((2, BINS)))

    def add(self, prob: np.ndarray, predicted: np.ndarray, truth: np.ndarray | None = None) -> None:
        """Accumulate pixels: ``prob`` of the class, ``predicted`` (argmax is the class), ``truth`` bool."""
        prob = np.asarray(prob, np.float64).ravel()
        index = np.asarray(predicted, bool).ravel().astype(np.int64) * BINS + _bin(prob)
        self.count += np.bincount(index, minlength=2 * BINS).reshape(2, BINS)
        self.psum += np.bincount(index, prob, minlength=2 * BINS).reshape(2, BINS)
        if truth is not None:
            hits = np.asarray(truth, bool).ravel().astype(np.float64)
            self.positive += np.bincount(index, hits, minlength=2 * BINS).reshape(2, BINS)

    def rate(self) -> np.ndarray:
        """The model's own foreground rate per cell (mean probability; bin centre where empty)."""
        centre = (np.arange(BINS) + 0.5) / BINS
        return np.where(self.count > 0, self.psum / np.maximum(self.count, 1), centre[None, :])


def iou_from_rates(volume: ProbabilityHistogram, rate: np.ndarray) -> float | None:
    """Expected IoU of the volume's predictions when a cell's pixels are foreground with ``rate``."""
    tp = float((volume.count[1] * rate[1]).sum())
    fp = float((volume.count[1] * (1 - rate[1])).sum())
    fn = float((volume.count[0] * rate[0]).sum())
    return tp / (tp + fp + fn) if tp + fp + fn > 0 else None


def expected_iou(volume: ProbabilityHistogram) -> float | None:
    """IoU the predictions would have if the probabilities were calibrated."""
    return iou_from_rates(volume, volume.rate())


def calibrated_rate(volume: ProbabilityHistogram, heldout: ProbabilityHistogram,
                    prior_pixels: float = PRIOR_PIXELS) -> np.ndarray:
    """Per-cell foreground rate measured on held-out labels, shrunk toward the model's own rate."""
    prior = volume.rate()
    return (heldout.positive + prior_pixels * prior) / (heldout.count + prior_pixels)


def calibrated_iou(volume: ProbabilityHistogram, heldout: ProbabilityHistogram) -> float | None:
    """Expected IoU after recalibrating the probabilities on the held-out labels."""
    return iou_from_rates(volume, calibrated_rate(volume, heldout))


def estimate_range(own: float, recalibrated: float) -> tuple[float, float]:
    """The range the page shows: from the lower to the higher of the expected and recalibrated IoU."""
    return (own, recalibrated) if own <= recalibrated else (recalibrated, own)


def boundary_pixels(labels: np.ndarray, distance: int = BOUNDARY_PX) -> int:
    """Labeled pixels within ``distance`` px of a labeled pixel of another class (label values > 0)."""
    labels = np.asarray(labels)
    total = 0
    values = [v for v in np.unique(labels) if v > 0]
    if len(values) < 2:
        return 0
    for v in values:
        own = labels == v
        other = (labels > 0) & ~own
        near = ndimage.binary_dilation(other, iterations=int(distance))
        total += int(np.count_nonzero(own & near))
    return total


def _box_area(mask: np.ndarray) -> int:
    ys, xs = np.nonzero(mask)
    return int((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)) if ys.size else 0


def is_dense(labels: np.ndarray) -> bool:
    """Labels that fill their bounding box (a completely labeled patch), not strokes."""
    n = int(np.count_nonzero(labels))
    return bool(n) and n >= DENSE_FRACTION * _box_area(np.asarray(labels) > 0)


def dense_share(label_arrays) -> float:
    """Share of all labeled pixels that lie in dense (completely labeled) regions; 0.0 without labels."""
    counts = [(int(np.count_nonzero(a)), is_dense(a)) for a in label_arrays]
    total = sum(n for n, _ in counts)
    return sum(n for n, dense in counts if dense) / total if total else 0.0


@dataclass
class Basis:
    """What a held-out estimate rests on (shown next to the number)."""

    regions: int = 0
    pixels: int = 0
    foreground: int = 0
    boundary: int = 0
    dense: int = 0           # labeled pixels in fully labeled regions (patches, not strokes)

    def add(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels)
        n = int(np.count_nonzero(labels))
        self.regions += 1
        self.pixels += n
        self.foreground += int(np.count_nonzero(labels >= 2))
        self.boundary += boundary_pixels(labels)
        if is_dense(labels):
            self.dense += n

    def thin_reason(self) -> str | None:
        """Why the held-out labels cannot be trusted to check the estimate, or None."""
        if self.regions == 0:
            return "no labels were held out to check it"
        if self.foreground < MIN_HELDOUT_FG:
            return f"not enough held-out labels: {self.foreground:,} foreground px (need {MIN_HELDOUT_FG:,})"
        if self.boundary < MIN_BOUNDARY:
            return (f"not enough held-out labels at object boundaries ({self.boundary:,} px, need {MIN_BOUNDARY:,}): "
                    f"paint both sides of some boundaries, or label suggested patches completely")
        if self.dense < MIN_DENSE:
            return (f"the held-out labels are strokes ({self.dense:,} px in fully labeled patches, need "
                    f"{MIN_DENSE:,}): strokes show where you looked, not where the model errs; label a few "
                    f"suggested patches completely")
        return None

    def text(self) -> str:
        return (f"{self.regions} held-out region{'s' if self.regions != 1 else ''}, {self.pixels:,} px "
                f"({self.boundary:,} at boundaries)")


@dataclass
class QualityEstimate:
    """What the app shows for a model: an IoU range with its basis, or why there is none.

    ``iou`` is the range's lower end, the one number tables and charts show; ``high`` its upper
    end. On VNC with 20-60 fully labeled patches (docs/BENCHMARKS.md) the recalibrated estimate
    overstated the true IoU by up to 0.25 while the model's own expected IoU never did, and the
    truth lay between the two in 8 of 9 runs; on the synthetic test volume the expected IoU
    understated (0.36 against 0.84) and the recalibrated one was right. Neither end alone is
    the truth: the page shows the range, and where one number must stand, the lower end. Read from a
    model that self-trained (the app's training since v11) the lower end overstated too: in 8 of 9 runs on
    the slices it reads, by 0.04 on average and up to 0.13 (BENCHMARKS, quality v4). Read from the same
    model before its self-training (``TrainResult.labels_only``, the app's way since quality v5) it lay
    above the final model's truth in 3 of 9 runs, by at most 0.035, and 0.054 below it on average.
    """

    iou: float | None
    basis: Basis
    method: str = "min(expected, calibrated)"
    reason: str | None = None           # why no number is given (the held-out labels are too thin)
    high: float | None = None           # the range's upper end (None: a single number)

    def to_dict(self) -> dict:
        return {"iou": self.iou, "high": self.high, "method": self.method, "reason": self.reason,
                "basis": dict(self.basis.__dict__)}

    @classmethod
    def from_dict(cls, d: dict) -> "QualityEstimate":
        return cls(d.get("iou"), Basis(**d.get("basis", {})), d.get("method", "calibrated"), d.get("reason"),
                   d.get("high"))

    def text(self) -> str:
        """One line for the page: the range and what it rests on, or a plain 'not enough labels'."""
        if self.iou is None:
            return f"quality not estimated: {self.reason}"
        if self.high is not None and self.high - self.iou >= 0.005:
            return f"estimated IoU {self.iou:.2f} to {self.high:.2f} (on {self.basis.text()})"
        return f"estimated IoU {self.iou:.2f} (on {self.basis.text()})"


def class_histograms(model, images, regions, cls: int, device=None) -> tuple[ProbabilityHistogram,
                                                                              ProbabilityHistogram]:
    """Histograms of class ``cls`` over unlabeled ``images`` (normalised 2D) and the labeled ``regions``."""
    volume, heldout = ProbabilityHistogram(), ProbabilityHistogram()
    for image in images:
        prob = predict_image(model, image, device=device)["prob"]
        volume.add(prob[cls], predicted_class(prob) == cls)
    for r in regions:
        prob = predict_image(model, r.image, device=device)["prob"]
        m = r.labels > 0
        heldout.add(prob[cls][m], predicted_class(prob)[m] == cls, r.labels[m] == cls + 1)
    return volume, heldout


def estimate_quality(model, images, heldout_regions, device=None) -> QualityEstimate:
    """Range over foreground classes' means: the lower and the higher of the model's own expected
    IoU and the recalibrated one; None when the basis is thin.

    ``images``: a sample of normalised slices of the user's volume (what the estimate is about);
    ``heldout_regions``: labeled regions the model never trained on (``ml.dataset.Region``).
    """
    images = list(images)
    basis = Basis()
    for r in heldout_regions:
        basis.add(r.labels)
    reason = basis.thin_reason()
    if reason is not None:
        return QualityEstimate(None, basis, reason=reason)
    pairs = []
    for cls in range(1, int(model.config["n_classes"])):
        volume, heldout = class_histograms(model, images, heldout_regions, cls, device)
        own, recalibrated = expected_iou(volume), calibrated_iou(volume, heldout)
        if own is not None and recalibrated is not None:
            pairs.append(estimate_range(own, recalibrated))
    if not pairs:
        return QualityEstimate(None, basis, reason="the model predicts no foreground on the sampled slices")
    low, high = np.mean(pairs, axis=0)
    return QualityEstimate(float(low), basis, high=float(high))
