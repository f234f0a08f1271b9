"""Training data from sparse labels: regions with image context, splits and crop sampling.

Experts label scattered strokes and patches, so training data is a list of 2D
``Region``s: a normalised image window around labeled pixels (with ``pad`` pixels of real
surroundings, so crops see true context rather than padding) and its label window where
unlabeled pixels stay 0 and are ignored by the loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from ml.io.normalize import normalize
from ml.slice_context import as_channels


@dataclass
class Region:
    """One 2D training window: ``image`` float32 (H,W) in [0,1], or (C,H,W) for a slice read with its
    neighbours (``ml.slice_context``); ``labels`` uint8 (H,W), 0 = unlabeled.

    ``z, y0, x0`` record where the window came from (provenance only).
    """

    image: np.ndarray
    labels: np.ndarray
    z: int = -1
    y0: int = 0
    x0: int = 0

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.uint8)
        if self.image.ndim not in (2, 3) or self.labels.ndim != 2 or self.image.shape[-2:] != self.labels.shape:
            raise ValueError(f"Region needs an (H, W) or (C, H, W) image and (H, W) labels of the same size, "
                             f"got {self.image.shape} and {self.labels.shape}")

    @property
    def n_labeled(self) -> int:
        return int(np.count_nonzero(self.labels))


def merge_boxes(boxes: Sequence[tuple[int, int, int, int]], gap: int = 0) -> list[tuple[int, int, int, int]]:
    """Union ``(y0, y1, x0, x1)`` boxes that overlap or lie within ``gap`` pixels, until stable."""
    out = [tuple(int(v) for v in b) for b in boxes]
    merged = True
    while merged:
        merged = False
        result: list[tuple[int, int, int, int]] = []
        for b in out:
            for i, r in enumerate(result):
                if b[0] <= r[1] + gap and r[0] <= b[1] + gap and b[2] <= r[3] + gap and r[2] <= b[3] + gap:
                    result[i] = (min(b[0], r[0]), max(b[1], r[1]), min(b[2], r[2]), max(b[3], r[3]))
                    merged = True
                    break
            else:
                result.append(b)
        out = result
    return sorted(out)


def regions_from_store(volume: Any, store: Any, lo: float | None = None, hi: float | None = None,
                       pad: int = 32) -> list[Region]:
    """One Region per cluster of labeled chunks per slice, padded by ``pad`` px of image context.

    ``store`` follows the LabelStore API (``labeled_boxes()``, ``read(z, y0, y1, x0, x1)``);
    ``lo``/``hi`` are the intensity window (default: ``volume.percentiles()``).
    """
    if lo is None or hi is None:
        lo, hi = volume.percentiles()
    _, height, width = volume.shape
    per_slice: dict[int, list[tuple[int, int, int, int]]] = {}
    for z, y0, y1, x0, x1 in store.labeled_boxes():
        per_slice.setdefault(int(z), []).append((y0, y1, x0, x1))
    regions = []
    for z in sorted(per_slice):
        for y0, y1, x0, x1 in merge_boxes(per_slice[z], gap=2 * pad):
            y0, x0 = max(0, y0 - pad), max(0, x0 - pad)
            y1, x1 = min(height, y1 + pad), min(width, x1 + pad)
            labels = np.asarray(store.read(z, y0, y1, x0, x1), dtype=np.uint8)
            if not labels.any():
                continue
            image = normalize(volume[z, y0:y1, x0:x1], float(lo), float(hi))
            regions.append(Region(image, labels, z, y0, x0))
    return regions


def regions_from_patches(volume_norm: Any, labels: Any, patches: Sequence[Any], offset: int = 0,
                         pad: int = 0) -> list[Region]:
    """Regions for fully labeled square patches (``Patch(z, y, x, size)``), e.g. for the benchmark.

    ``volume_norm``: a normalised (Z,Y,X) array-like, or a callable ``Patch -> (size,size)`` image.
    ``labels``: (Z,Y,X) array-like in label convention (0 unlabeled, 1..C); ``offset`` is added
    to what is read, so a binary ground-truth mask (0/1) with ``offset=1`` becomes fully labeled.
    ``pad`` adds image context around each patch (array input only; context pixels stay unlabeled).
    """
    regions = []
    for p in patches:
        z, y, x, s = int(p.z), int(p.y), int(p.x), int(p.size)
        lab = np.asarray(labels[z, y:y + s, x:x + s]).astype(np.int64) + int(offset)
        if lab.min() < 0 or lab.max() > 255:
            raise ValueError(f"labels at {p} fall outside 0..255 after offset={offset}")
        if callable(volume_norm):
            regions.append(Region(volume_norm(p), lab.astype(np.uint8), z, y, x))
            continue
        _, height, width = volume_norm.shape
        y0, x0 = max(0, y - pad), max(0, x - pad)
        y1, x1 = min(height, y + s + pad), min(width, x + s + pad)
        full = np.zeros((y1 - y0, x1 - x0), np.uint8)
        full[y - y0:y - y0 + lab.shape[0], x - x0:x - x0 + lab.shape[1]] = lab
        regions.append(Region(np.asarray(volume_norm[z, y0:y1, x0:x1]), full, z, y0, x0))
    return regions


def _split_one(region: Region, val_fraction: float) -> tuple[list[Region], list[Region]]:
    """Hold out the far end (along the longer axis) holding ~val_fraction of the labeled pixels.

    Both parts keep the whole image as context; each keeps only its own labels.
    """
    axis = 0 if region.labels.shape[0] >= region.labels.shape[1] else 1
    counts = np.count_nonzero(region.labels, axis=1 - axis).cumsum()
    cut = int(np.searchsorted(counts, counts[-1] * (1.0 - val_fraction)))
    cut = min(cut + 1, len(counts) - 1)
    index = [slice(None), slice(None)]
    index[axis] = slice(cut, None)
    train_lab, val_lab = region.labels.copy(), np.zeros_like(region.labels)
    val_lab[tuple(index)] = region.labels[tuple(index)]
    train_lab[tuple(index)] = 0
    if not train_lab.any() or not val_lab.any():
        return [region], []
    return ([Region(region.image, train_lab, region.z, region.y0, region.x0)],
            [Region(region.image, val_lab, region.z, region.y0, region.x0)])


def split_regions(regions: Sequence[Region], val_fraction: float = 0.2,
                  seed: int = 0) -> tuple[list[Region], list[Region]]:
    """Hold out whole regions (~``val_fraction`` of labeled pixels) for validation.

    With a single region, a spatial strip of it is held out instead. Training always keeps
    at least one region; ``val_fraction <= 0`` gives no validation set.
    """
    regions = [r for r in regions if r.n_labeled > 0]
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0 or not regions:
        return regions, []
    if len(regions) == 1:
        return _split_one(regions[0], val_fraction)
    order = np.random.default_rng(seed).permutation(len(regions))
    target = val_fraction * sum(r.n_labeled for r in regions)
    val_idx: list[int] = []
    held = 0
    for i in order[:-1]:
        if held >= target:
            break
        val_idx.append(int(i))
        held += regions[i].n_labeled
    val = [regions[i] for i in sorted(val_idx)]
    train = [r for i, r in enumerate(regions) if i not in set(val_idx)]
    return train, val


class CropSampler:
    """Seeded random training crops centred near labeled pixels, classes drawn evenly by default.

    The centre class is chosen among classes present, then a labeled pixel of that class
    (regions weighted by how many they hold). With ``balance`` 1 (the default) every class is
    chosen equally often, so a rare class (mitochondria) appears in crops as often as
    background; with 0 a class is chosen as often as its labeled pixels (crop centres uniform
    over labeled pixels); in between, in proportion to ``count ** (1 - balance)``. Regions
    smaller than ``crop`` are reflection-padded (padding stays unlabeled). With ``zoom`` z > 0
    (and ``augment``) each crop is a window of side crop * s resampled to crop, s log-uniform in
    [1/(1+z), 1+z]: objects seen at sizes the few labeled ones do not show.
    """

    def __init__(self, regions: Sequence[Region], crop: int = 128, augment: bool = True, seed: int = 0,
                 jitter: float = 0.25, zoom: float = 0.0, balance: float = 1.0):
        self.regions = [r for r in regions if r.n_labeled > 0]
        if not self.regions:
            raise ValueError("CropSampler needs at least one region with labeled pixels (labels > 0)")
        self.crop, self.augment, self.jitter, self.zoom = int(crop), bool(augment), float(jitter), float(zoom)
        self.rng = np.random.default_rng(seed)
        self.index: dict[int, list[tuple[int, np.ndarray]]] = {}
        for ri, r in enumerate(self.regions):
            flat = r.labels.ravel()
            for v in np.unique(flat[flat > 0]):
                idx = np.flatnonzero(flat == v)
                self.index.setdefault(int(v), []).append((ri, idx.astype(np.int32) if flat.size < 2**31 else idx))
        self.classes = sorted(self.index)
        self.class_p = self._class_odds(float(balance))

    def _class_odds(self, balance: float) -> np.ndarray | None:
        """How often each class is a crop's centre; None for "evenly" (drawn as before ``balance``
        existed, so a default run draws the same crops)."""
        if balance >= 1.0:
            return None
        counts = self.label_counts()
        odds = np.array([counts[c] for c in self.classes], dtype=np.float64) ** (1.0 - balance)
        return odds / odds.sum()

    def _centre(self) -> tuple[Region, int, int]:
        n = len(self.classes)
        pick = self.rng.integers(n) if self.class_p is None else self.rng.choice(n, p=self.class_p)
        entries = self.index[self.classes[pick]]
        sizes = np.array([len(e[1]) for e in entries], dtype=np.float64)
        ri, flat = entries[self.rng.choice(len(entries), p=sizes / sizes.sum())]
        region = self.regions[ri]
        cy, cx = divmod(int(flat[self.rng.integers(len(flat))]), region.labels.shape[1])
        j = int(self.crop * self.jitter)
        if j > 0:
            cy, cx = cy + int(self.rng.integers(-j, j + 1)), cx + int(self.rng.integers(-j, j + 1))
        return region, cy, cx

    def _side(self) -> int:
        """The side of the window a crop is cut from: ``crop``, or zoomed (drawn only when zooming, so
        a run without zoom draws the same crops as before it existed)."""
        if not (self.augment and self.zoom > 0):
            return self.crop
        r = np.log1p(self.zoom)
        return max(2, int(round(self.crop * np.exp(self.rng.uniform(-r, r)))))

    def _resampled(self, img: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A zoomed window brought to crop x crop: the image bilinear, the labels nearest (0 stays unlabeled)."""
        f = self.crop / img.shape[-1]
        img = ndimage.zoom(img, (1,) * (img.ndim - 2) + (f, f), order=1, mode="nearest", grid_mode=True)
        lab = ndimage.zoom(lab, f, order=0, mode="nearest", grid_mode=True)
        return img[..., :self.crop, :self.crop], lab[:self.crop, :self.crop]

    def _window(self, region: Region, cy: int, cx: int, side: int) -> tuple[np.ndarray, np.ndarray]:
        """side x side window around (cy, cx), shifted to stay inside, reflection-padded if too small."""
        c = side
        image, labels = region.image, region.labels
        h, w = labels.shape
        if h < c or w < c:
            ph, pw = max(0, c - h), max(0, c - w)
            pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
            image = np.pad(image, ((0, 0),) * (image.ndim - 2) + pads, mode="reflect" if min(h, w) > 1 else "edge")
            labels = np.pad(labels, pads, mode="constant")
            cy, cx, h, w = cy + pads[0][0], cx + pads[1][0], h + ph, w + pw
        y0 = int(np.clip(cy - c // 2, 0, h - c))
        x0 = int(np.clip(cx - c // 2, 0, w - c))
        return image[..., y0:y0 + c, x0:x0 + c], labels[y0:y0 + c, x0:x0 + c]

    def _augment(self, img: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        k = int(rng.integers(4))
        img, lab = np.rot90(img, k, axes=(-2, -1)), np.rot90(lab, k)
        if rng.random() < 0.5:
            img, lab = img[..., ::-1], lab[:, ::-1]
        img = np.clip(img, 0.0, 1.0) ** np.exp(rng.uniform(-0.3, 0.3))
        mean = img.mean()
        img = (img - mean) * rng.uniform(0.8, 1.25) + mean + rng.uniform(-0.08, 0.08)
        img = img + rng.normal(0.0, rng.uniform(0.0, 0.04), img.shape)
        return img.astype(np.float32), lab

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(images float32 [B,C,crop,crop], labels int64 [B,crop,crop])`` in label convention (C = 1 for
        2D regions)."""
        imgs, labs = [], []
        for _ in range(int(batch_size)):
            region, cy, cx = self._centre()
            img, lab = self._window(region, cy, cx, self._side())
            if img.shape[-1] != self.crop:
                img, lab = self._resampled(img, lab)
            if self.augment:
                img, lab = self._augment(img, lab)
            imgs.append(np.ascontiguousarray(as_channels(img), dtype=np.float32))
            labs.append(np.ascontiguousarray(lab, dtype=np.int64))
        return np.stack(imgs), np.stack(labs)

    def label_counts(self) -> dict[int, int]:
        """Labeled pixels per label value over all regions (for class weights)."""
        return {v: int(sum(len(e[1]) for e in entries)) for v, entries in self.index.items()}


class FocusSampler:
    """Crops of which a ``share`` is centred on ``focus`` regions (the newest stroke), the rest on all.

    A warm-start of a few steps samples too few crops to meet a new stroke by chance; live
    mode makes every batch see it, so the overlay answers the stroke that was just painted.
    """

    def __init__(self, regions: Sequence[Region], focus: Sequence[Region], share: float = 0.5, crop: int = 128,
                 augment: bool = True, seed: int = 0, zoom: float = 0.0, balance: float = 1.0):
        self.all = CropSampler(regions, crop, augment, seed, zoom=zoom, balance=balance)
        focus = [r for r in focus if r.n_labeled > 0]
        self.focus = (CropSampler(focus, crop, augment, seed + 1, zoom=zoom, balance=balance)
                      if focus and share > 0 else None)
        self.share = float(share)
        self.classes = sorted(set(self.all.classes) | set(self.focus.classes if self.focus else []))

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        n_focus = int(round(batch_size * self.share)) if self.focus else 0
        parts = [s.sample(n) for s, n in ((self.focus, n_focus), (self.all, batch_size - n_focus)) if n > 0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
