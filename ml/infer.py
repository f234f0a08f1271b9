"""Tiled inference: seamless probability and uncertainty maps for images and whole volumes.

Output tiles partition the image and each is predicted from a window with ``context`` px of
real image around it, on the network's pooling grid, so there are no seams and a pixel's
probability does not depend on how the image was tiled (a viewer tile, a whole-volume
segmentation and an AL score of the same pixel agree). Volumes stream slice by slice into a Zarr v3 group, never holding more than one
slice in memory; ``complete`` is set only when every slice is written.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ml.device import autocast, inference_layout, pick_device, seeded
from ml.io.normalize import normalize
from ml.mc import MCSampler
from ml.progress import CancelFn, ProgressFn, check_cancel, report
from ml.slice_context import as_channels, with_neighbours
from ml.z_consensus import WEIGHT, check_weight, neighbours, slice_consensus, smooth_z


class PredictionError(ValueError):
    """A prediction store is missing, unreadable or was not finished."""


#: Default output tile (px). Each tile is predicted from a window with the model's receptive
#: radius of real image around it (``UNet2D.receptive_radius``, 112 px for depth 4 after
#: alignment), so tiling changes nothing: measured in docs/BENCHMARKS.md ("Tile invariance"),
#: where 32 px of context still let a pixel's probability move by 0.44. A 1024 px slice is
#: 2 x 2 windows of 624 px (1.49x its area).
TILE = 512


def tile_plan(size: int, tile: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``(start, stop)`` of near-equal output tiles partitioning [0, size), each at most ``tile``
    px (rounded up to ``multiple``), with starts on multiples of ``multiple``.

    Aligned starts put every tile on the network's pooling grid, so a pixel sees the same
    computation whichever tile it falls in.
    """
    n = max(1, math.ceil(size / max(1, tile)))
    length = math.ceil(size / n / multiple) * multiple
    starts = list(range(0, size, length))
    return [(s, min(size, s + length)) for s in starts]


def input_box(start: int, stop: int, size: int, context: int) -> tuple[int, int]:
    """The input window of an output tile: ``context`` px more on each side, clipped to the image."""
    return max(0, start - context), min(size, stop + context)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy over the class axis (dim 1), normalised by log(C) to [0, 1]."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(1) / math.log(p.shape[1])


def _run_batch(model: nn.Module, x: torch.Tensor, device: torch.device,
               mc_passes: int, mc_scope: str = "head") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax probabilities [N,C,h,w] (MC mean when mc_passes>0) and mean per-pass entropy."""
    if mc_passes <= 0:
        with autocast(device):
            return torch.softmax(model(x).float(), 1), None
    mean_p, mean_h = None, None
    with autocast(device):
        sampler = MCSampler(model, x, mc_scope)
    for _ in range(mc_passes):
        with autocast(device):
            p = torch.softmax(sampler.sample().float(), 1)
        h = _entropy(p)
        mean_p = p if mean_p is None else mean_p + p
        mean_h = h if mean_h is None else mean_h + h
    return mean_p / mc_passes, mean_h / mc_passes


def _check_args(image: np.ndarray, tile: int, context: int, batch_size: int, mc_passes: int) -> None:
    if image.ndim not in (2, 3):
        raise ValueError(f"predict_image needs an (H, W) or (C, H, W) image, got shape {image.shape}")
    if tile < 16 or context < 0 or batch_size < 1 or mc_passes < 0:
        raise ValueError(
            f"need tile >= 16, context >= 0, batch_size >= 1, mc_passes >= 0; "
            f"got tile={tile}, context={context}, batch_size={batch_size}, mc_passes={mc_passes}"
        )


def tile_windows(h: int, w: int, tile: int, context: int, multiple: int) -> dict[tuple[int, int], list]:
    """Output tiles with their input windows, grouped by input shape (a batch needs one shape).

    Each entry is ``((y0, y1, x0, x1) output, (iy0, iy1, ix0, ix1) input)``. ``context`` is
    rounded up to ``multiple`` so input windows start on the pooling grid too.
    """
    context = math.ceil(context / multiple) * multiple
    groups: dict[tuple[int, int], list] = {}
    for y0, y1 in tile_plan(h, tile, multiple):
        iy0, iy1 = input_box(y0, y1, h, context)
        for x0, x1 in tile_plan(w, tile, multiple):
            ix0, ix1 = input_box(x0, x1, w, context)
            groups.setdefault((iy1 - iy0, ix1 - ix0), []).append(((y0, y1, x0, x1), (iy0, iy1, ix0, ix1)))
    return groups


def predict_image(model: nn.Module, image: np.ndarray, tile: int = TILE, batch_size: int = 8, mc_passes: int = 0,
                  device: torch.device | str | None = None, seed: int | None = 0,
                  context: int | None = None) -> dict[str, np.ndarray]:
    """Predict a normalised (H, W) image (or (C, H, W): a slice with its neighbours) tile by tile, each
    tile seen with ``context`` px around it.

    The output tiles partition the image; each is cut from a prediction of a larger input
    window (``context`` px of real image on every side that has some, on the pooling grid),
    so a pixel's probability does not depend on the tile size or position (checked in
    tests/ml/test_infer.py); ``None`` means the model's receptive radius (exact invariance,
    0 for a model that does not declare one). The viewer, the whole-volume segmentation and AL scoring
    agree. Returns ``prob`` float32 (C,H,W); with ``mc_passes > 0`` ``prob`` is the
    MC-dropout mean and ``entropy`` (predictive) and ``bald`` (mutual information) float32
    (H,W) are added, both normalised by log(C) to [0, 1]; MC-dropout masks are drawn from
    ``seed``. The model's train/eval flags are restored.
    """
    image = np.asarray(image, dtype=np.float32)
    context = int(getattr(model, "receptive_radius", 0)) if context is None else int(context)
    _check_args(image, int(tile), context, int(batch_size), int(mc_passes))
    image = as_channels(image)
    wanted = int(getattr(model, "config", {}).get("in_channels", image.shape[0]))
    if image.shape[0] != wanted:
        raise ValueError(f"the model reads {wanted} channel(s) (a slice and its neighbours), got {image.shape[0]}")
    device = device if isinstance(device, torch.device) else pick_device(device)
    h, w = image.shape[-2:]
    groups = tile_windows(h, w, int(tile), int(context), int(getattr(model, "multiple", 1)))
    prob = mean_h = None
    with inference_layout(model, device), torch.inference_mode(), seeded(seed, device):
        for entries in groups.values():
            for i in range(0, len(entries), batch_size):
                batch = entries[i:i + batch_size]
                x = torch.from_numpy(np.stack([image[:, a:b, c:d] for _, (a, b, c, d) in batch]))
                x = x.to(device).contiguous(memory_format=torch.channels_last)
                p, mh = _run_batch(model, x, device, int(mc_passes))
                p = p.cpu().numpy()
                mh = mh.cpu().numpy() if mh is not None else None
                if prob is None:
                    prob = np.zeros((p.shape[1], h, w), np.float32)
                    mean_h = np.zeros((h, w), np.float32) if mh is not None else None
                for j, ((y0, y1, x0, x1), (iy0, _, ix0, _)) in enumerate(batch):
                    core = np.s_[y0 - iy0:y1 - iy0, x0 - ix0:x1 - ix0]
                    prob[:, y0:y1, x0:x1] = p[j][(slice(None),) + core]
                    if mean_h is not None:
                        mean_h[y0:y1, x0:x1] = mh[j][core]
    out = {"prob": prob}
    if mean_h is not None:
        ent = _entropy(torch.from_numpy(prob[None]))[0].numpy()
        out["entropy"] = ent.astype(np.float32)
        out["bald"] = np.clip(ent - mean_h, 0.0, None).astype(np.float32)
    return out


def _class_names(classes: Sequence[Any] | None, n: int) -> list:
    if classes is None:
        return ["background"] + [f"class_{i}" for i in range(1, n)]
    if len(classes) != n:
        raise ValueError(f"{len(classes)} class names given for a model with {n} classes")
    return list(classes)


def _create_group(out_path: Path, shape: tuple[int, int, int], n_classes: int, mc: bool, attrs: dict):
    import zarr

    z, h, w = shape
    group = zarr.open_group(str(out_path), mode="w", zarr_format=3)
    chunks = (1, 1, min(512, h), min(512, w))
    group.create_array("prob", shape=(n_classes, z, h, w), chunks=chunks, dtype="float16", fill_value=0)
    if mc:
        for name in ("entropy", "bald"):
            group.create_array(name, shape=(z, h, w), chunks=chunks[1:], dtype="float16", fill_value=0)
    group.attrs.update(attrs)
    return group


def slice_entropy(prob: np.ndarray | None, entropy: np.ndarray | None = None) -> float:
    """Mean normalised entropy of one slice (4 decimals): of the MC ``entropy`` map when given,
    else of the (C, Y, X) probabilities.

    Callers pass the values as stored (float16), so the number written during prediction and the
    one recomputed later from the group are identical.
    """
    if entropy is None:
        entropy = _entropy(torch.from_numpy(np.asarray(prob, np.float32)[None]))[0].numpy()
    return round(float(np.mean(entropy, dtype=np.float64)), 4)


def _write_slice(group: Any, z: int, out: dict[str, np.ndarray]) -> float:
    """Store slice ``z`` of a prediction (float16); returns its mean uncertainty."""
    prob = out["prob"].astype(np.float16)
    group["prob"][:, z] = prob
    if "entropy" not in out:
        return slice_entropy(prob)
    entropy = out["entropy"].astype(np.float16)
    group["entropy"][z] = entropy
    group["bald"][z] = out["bald"].astype(np.float16)
    return slice_entropy(None, entropy)


def start_prediction(model: nn.Module, volume: Any, out_path: str | Path, lo: float | None = None,
                     hi: float | None = None, tile: int = TILE, mc_passes: int = 0,
                     classes: Sequence[Any] | None = None, context: int | None = None,
                     z_consensus: float = WEIGHT):
    """Create the (empty) Zarr v3 prediction group of ``volume`` at ``out_path``; returns it.

    Its attrs hold every setting :func:`predict_slices` needs, so writers of different slices
    (one process, or z-chunks on several machines) predict each slice identically; each slice is
    its own chunk, so they never write the same file. ``z_consensus`` is how its readers mix a
    slice with its neighbours (:func:`consensus_prob`; ``ml.z_consensus``).
    """
    z_consensus = check_weight(z_consensus)
    if lo is None or hi is None:
        if not hasattr(volume, "percentiles"):
            raise TypeError("predict_volume needs lo and hi for an array without .percentiles(); pass both")
        lo, hi = volume.percentiles()
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise ValueError(f"predict_volume needs a (Z, Y, X) volume, got shape {shape}")
    n_classes = int(model.config["n_classes"]) if hasattr(model, "config") else 2
    voxel = getattr(volume, "voxel_size", None)
    attrs = {"voxel_size": list(voxel) if voxel else None, "classes": _class_names(classes, n_classes),
             "lo": float(lo), "hi": float(hi), "mc_passes": int(mc_passes), "tile": int(tile),
             "context": int(getattr(model, "receptive_radius", 0)) if context is None else int(context),
             "z_consensus": z_consensus, "slices_done": 0, "slice_entropy": [], "complete": False}
    return _create_group(Path(out_path), shape, n_classes, mc_passes > 0, attrs)


def predict_slices(model: nn.Module, volume: Any, group: Any, zs: Sequence[int], batch_size: int = 8,
                   device: torch.device | str | None = None, cancel: CancelFn = None, seed: int | None = 0,
                   on_slice=None) -> dict[int, float]:
    """Predict slices ``zs`` into ``group`` with the settings in its attrs; ``{z: mean uncertainty}``.

    ``on_slice(z, uncertainty)`` runs after each slice is stored (progress, heartbeats). MC-dropout
    masks of slice z come from ``seed + z``, so a slice's result does not depend on who predicts it.
    """
    a = dict(group.attrs)
    context = int(a["context"])
    volume = with_neighbours(volume, model)
    done: dict[int, float] = {}
    for z in zs:
        check_cancel(cancel)
        image = normalize(volume[int(z)], a["lo"], a["hi"])
        out = predict_image(model, image, int(a["tile"]), batch_size, int(a["mc_passes"]), device,
                            seed=None if seed is None else int(seed) + int(z), context=context)
        done[int(z)] = _write_slice(group, int(z), out)
        if on_slice is not None:
            on_slice(int(z), done[int(z)])
    return done


def finish_prediction(group: Any, slice_entropy: Sequence[float], seconds: float) -> None:
    """Mark a prediction complete once every slice is written (``open_prediction`` refuses it before)."""
    group.attrs.update({"slices_done": len(slice_entropy), "slice_entropy": list(slice_entropy), "complete": True,
                        "seconds": round(float(seconds), 3)})


def predict_volume(model: nn.Module, volume: Any, out_path: str | Path, lo: float | None = None,
                   hi: float | None = None, tile: int = TILE, batch_size: int = 8,
                   mc_passes: int = 0, device: torch.device | str | None = None,
                   progress: ProgressFn = None, cancel: CancelFn = None,
                   classes: Sequence[Any] | None = None, seed: int | None = 0, context: int | None = None,
                   z_consensus: float = WEIGHT) -> Path:
    """Predict every slice of a (Z, Y, X) volume into a Zarr v3 group at ``out_path``.

    Arrays: ``prob`` (C,Z,Y,X) float16, the model's own slices; with ``mc_passes > 0`` also
    ``entropy`` and ``bald`` (Z,Y,X) float16. Attrs: voxel_size, classes, lo, hi, mc_passes,
    z_consensus (read it through :func:`consensus_prob` / :func:`consensus_plane`), slices_done,
    slice_entropy (mean uncertainty of each written slice, see :func:`slice_uncertainty`), complete.
    Intensities are scaled with ``lo``/``hi`` (default ``volume.percentiles()``). Reads one
    slice at a time; on cancel raises Cancelled with ``complete`` left False. MC-dropout
    masks of slice z are drawn from ``seed + z`` (reproducible, not repeated across slices).
    """
    group = start_prediction(model, volume, out_path, lo, hi, tile, mc_passes, classes, context, z_consensus)
    n = int(volume.shape[0])
    start, per_slice = time.monotonic(), []

    def written(z: int, uncertainty: float) -> None:
        per_slice.append(uncertainty)
        group.attrs.update({"slices_done": z + 1, "slice_entropy": per_slice})
        elapsed = time.monotonic() - start
        report(progress, z + 1, n, stage="predict", eta_s=round(elapsed / (z + 1) * (n - z - 1), 1))

    predict_slices(model, volume, group, range(n), batch_size, device, cancel, seed, written)
    finish_prediction(group, per_slice, time.monotonic() - start)
    return Path(out_path)


def open_prediction(path: str | Path, allow_incomplete: bool = False):
    """Open a prediction group read-only; raise PredictionError if missing or unfinished."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise PredictionError(f"no prediction at {path}")
    try:
        group = zarr.open_group(str(path), mode="r")
        group["prob"]
    except Exception as exc:
        raise PredictionError(f"{path} is not a prediction store written by predict_volume ({exc})") from exc
    if not group.attrs.get("complete", False) and not allow_incomplete:
        raise PredictionError(
            f"prediction at {path} is incomplete ({group.attrs.get('slices_done', 0)} slices written); "
            "it was cancelled or crashed: run it again, or pass allow_incomplete=True"
        )
    return group


def consensus_weight(group: Any) -> float:
    """The z-consensus weight a prediction is read with: 0 for one written before it existed (read as written)."""
    return check_weight(group.attrs.get("z_consensus", 0.0))


def consensus_prob(group: Any, z: int) -> np.ndarray:
    """Class probabilities (C, Y, X) float32 of slice ``z`` as the app shows and measures them: the
    model's slice mixed with its neighbours' (``ml.z_consensus``), reading only those three slices."""
    z0, z1 = neighbours(int(z), int(group["prob"].shape[1]))
    return slice_consensus(np.asarray(group["prob"][:, z0:z1]), int(z), z0, consensus_weight(group), axis=1)


def consensus_plane(group: Any, plane: str, index: int) -> np.ndarray:
    """Class probabilities (C, h, w) of an ``xy`` (slice), ``xz`` or ``yz`` plane, each pixel's value the one
    :func:`consensus_prob` gives it: a pixel reads the same from every plane that shows it."""
    prob = group["prob"]
    if plane == "xy":
        return consensus_prob(group, index)
    side = prob[:, :, int(index), :] if plane == "xz" else prob[:, :, :, int(index)]
    return smooth_z(np.asarray(side), consensus_weight(group), axis=1)


def foreground_probability(group: Any, z: int) -> np.ndarray:
    """P(not background) for slice ``z`` as float32 (Y, X): the sum over classes 1..C-1 of its
    :func:`consensus_prob`."""
    return consensus_prob(group, z)[1:].sum(0)


def stored_slice_uncertainty(group: Any) -> np.ndarray | None:
    """The per-slice means written during prediction, or None for a group written before they
    existed (or an unfinished one), which :func:`slice_uncertainty` must recompute."""
    values = group.attrs.get("slice_entropy")
    if values is None or len(values) != group["prob"].shape[1]:
        return None
    return np.asarray(values, np.float32)


def slice_uncertainty(group: Any) -> np.ndarray:
    """Mean normalised entropy of every slice, float32 (Z,): where the model is unsure.

    Uses the ``slice_entropy`` attr when complete; otherwise recomputes it one slice at a time
    (bounded memory), giving the same numbers, so older predictions work too.
    """
    stored = stored_slice_uncertainty(group)
    if stored is not None:
        return stored
    nz = int(group["prob"].shape[1])
    if "entropy" in group:
        return np.asarray([slice_entropy(None, group["entropy"][z]) for z in range(nz)], np.float32)
    return np.asarray([slice_entropy(group["prob"][:, z]) for z in range(nz)], np.float32)
