"""Slice previews: the active model's prediction of one xy slice, made when the viewer asks.

A newly trained model has no whole-volume prediction until the user segments; a preview lets
the viewer show it on the slice in view right away (about a second for a 1024 px slice on
CPU). Previews are cached as uint8 probabilities (1/510 off at most, invisible in an overlay),
at most ``MAX_SLICES`` per model, and only the newest model's are kept for a volume.
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

    info = projects.volume_info(config, volume_id)
    model, _ = training.load_model(config, model_id)
    image = normalize(projects.open_volume(config, volume_id)[int(z)], info["lo"], info["hi"])
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


def slice_prob(config: Any, volume_id: int, model_id: int, z: int) -> np.ndarray:
    """(C, H, W) float32 probabilities of xy slice ``z`` by ``model_id`` (cached after the first call)."""
    folder = Workspace(config.workspace).preview_dir(volume_id, model_id)
    path = folder / f"z{int(z)}.npy"
    with _lock((int(volume_id), int(model_id), int(z))):
        try:
            return np.load(path).astype(np.float32) / 255.0
        except (FileNotFoundError, ValueError, OSError):  # not made yet (or removed by a newer model's)
            prob = _predict(config, volume_id, model_id, z)
            _store(folder, z, prob)
            return prob
