"""Slice previews: the active model's prediction of one xy slice, made when the viewer asks
(by this process, or with the Celery backend by a worker: the web then never loads a model).

A newly trained model has no whole-volume prediction until the user segments; a preview lets
the viewer show it on the slice in view right away (about a second for a 1024 px slice on
CPU). Previews are cached as uint8 probabilities (1/510 off at most, invisible in an overlay),
at most ``MAX_SLICES`` per model, and only the newest model's are kept for a volume. A preview is
shown as a whole-volume prediction is read, in z consensus with its neighbours (``ml.z_consensus``):
the slices above and below are predicted (and cached) too, so the first preview of a model costs
three slices and the next slice one.
"""
from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from app.services import factory, projects, training
from app.workspace import Workspace
from ml.files import atomic_write

MAX_SLICES = 64
_LOCKS: dict[tuple[int, int, int], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(key: tuple[int, int, int]) -> threading.Lock:
    """One lock per slice, so the prediction and uncertainty overlays of a slice predict it once."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _predict(config: Any, volume_id: int, model_id: int, z: int) -> np.ndarray:
    from ml.infer import predict_image
    from ml.io.normalize import normalize
    from ml.slice_context import with_neighbours

    info = projects.volume_info(config, volume_id)
    model, _ = training.load_model(config, model_id)
    image = normalize(with_neighbours(projects.open_volume(config, volume_id), model)[int(z)], info["lo"], info["hi"])
    return predict_image(model, image, device=factory.device_for(config))["prob"]


def _store(folder: Path, z: int, prob: np.ndarray) -> None:
    """Write slice ``z`` atomically, drop the oldest slices beyond MAX_SLICES and other models' folders."""
    q = np.rint(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, q)

    atomic_write(folder / f"z{int(z)}.npy", write)
    for other in folder.parent.glob(folder.name.split("_model")[0] + "_model*"):
        if other != folder:
            shutil.rmtree(other, ignore_errors=True)
    slices = sorted(folder.glob("z*.npy"), key=lambda p: p.stat().st_mtime)
    for old in slices[:-MAX_SLICES]:
        old.unlink(missing_ok=True)


def _cached(path: Path) -> np.ndarray | None:
    try:
        return np.load(path).astype(np.float32) / 255.0
    except (FileNotFoundError, ValueError, OSError):  # not made yet (or removed by a newer model's)
        return None


def make(config: Any, volume_id: int, model_id: int, z: int) -> str:
    """Predict and store the preview of slice ``z`` (in a Celery worker: ``app.background.PREVIEW_TASK``)."""
    prob = _predict(config, volume_id, model_id, z)
    _store(Workspace(config.workspace).preview_dir(volume_id, model_id), z, prob)
    return "done"


def slice_prob(config: Any, volume_id: int, model_id: int, z: int) -> np.ndarray | None:
    """(C, H, W) float32 probabilities of xy slice ``z`` by ``model_id``, in z consensus with its neighbours
    by ``config.z_consensus`` (the same numbers as the model's whole-volume prediction, quantised); None
    when a slice was not predicted in time."""
    from ml.z_consensus import neighbours, slice_consensus

    z0, z1 = (neighbours(int(z), int(projects.volume_info(config, volume_id)["shape"][0]))
              if config.z_consensus else (int(z), int(z) + 1))
    stack = [_model_slice(config, volume_id, model_id, k) for k in range(z0, z1)]
    if any(p is None for p in stack):
        return None
    return slice_consensus(np.stack(stack, axis=1), int(z), z0, config.z_consensus, axis=1)


def _model_slice(config: Any, volume_id: int, model_id: int, z: int) -> np.ndarray | None:
    """(C, H, W) float32 probabilities of xy slice ``z`` by ``model_id`` alone (cached after the first call).

    With the Celery backend the worker predicts it (the web process never loads a model) and this
    waits up to ``background.PREVIEW_WAIT_S``; None when no worker answered in time.
    """
    path = Workspace(config.workspace).preview_dir(volume_id, model_id) / f"z{int(z)}.npy"
    with _lock((int(volume_id), int(model_id), int(z))):
        prob = _cached(path)
        if prob is not None:
            return prob
        if config.job_backend == "celery":
            from app import background

            return _cached(path) if background.preview_in_worker(config, volume_id, model_id, z) else None
        prob = _predict(config, volume_id, model_id, z)
        _store(path.parent, z, prob)
        return prob
