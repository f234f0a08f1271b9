"""Model checkpoints that rebuild themselves: weights + architecture + provenance.

A checkpoint file holds everything needed to use the model again with no guessing
(architecture config, class names, the intensity-normalisation settings used in
training, the training history and provenance meta). A sidecar ``<path>.json`` repeats
all of it except the weights, so the app and humans can list models without torch.
Both files are written atomically: a crash mid-save leaves the previous version intact.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ml.files import CHECKPOINT_FORMAT, atomic_write, read_sidecar, sidecar_path
from ml.model import UNet2D

__all__ = ["CheckpointError", "atomic_write", "load_checkpoint", "read_info", "save_checkpoint", "sidecar_path"]

FORMAT = CHECKPOINT_FORMAT
VERSION = 1
DEFAULT_NORMALIZATION = {"lo_pct": 1.0, "hi_pct": 99.5}


class CheckpointError(ValueError):
    """A file is missing, corrupt or not an ActiveSeg checkpoint."""


def _jsonable(name: str, value: Any) -> Any:
    """Round-trip through JSON so only plain data goes into the file (weights_only load)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint {name} must be JSON-serialisable: {exc}") from None


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    classes: list,
    history: list[dict] | None = None,
    meta: dict | None = None,
    normalization: dict | None = None,
) -> Path:
    """Atomically write weights + config + classes + history + meta, and the sidecar JSON.

    ``classes``: list of class names or of ``{"name", "color"}`` dicts (as LabelStore.classes).
    ``meta``: provenance, e.g. ``{"parent": "v1.pt", "labels_used": 1234}``; ``created`` is added.
    ``normalization``: intensity settings used for training (default percentiles 1 / 99.5).
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"model must expose a .config dict (UNet2D), got {type(model).__name__}")
    n_classes = config.get("n_classes")
    if n_classes is not None and len(classes) != n_classes:
        raise ValueError(f"{len(classes)} class names given for a model with n_classes={n_classes}")
    meta = dict(meta or {})
    meta.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    info = {
        "format": FORMAT,
        "version": VERSION,
        "config": _jsonable("config", config),
        "classes": _jsonable("classes", list(classes)),
        "history": _jsonable("history", list(history or [])),
        "meta": _jsonable("meta", meta),
        "normalization": _jsonable("normalization", dict(normalization or DEFAULT_NORMALIZATION)),
    }
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    payload = dict(info, state_dict=state)
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    text = json.dumps(info, indent=2)
    atomic_write(sidecar_path(path), lambda tmp: Path(tmp).write_text(text))
    return path


def read_info(path: str | Path) -> dict:
    """Everything but the weights, from the sidecar when present (cheap), else the checkpoint."""
    info = read_sidecar(path, FORMAT)
    if info is not None:
        return info
    payload = _read_payload(Path(path), "cpu")
    return {k: v for k, v in payload.items() if k != "state_dict"}


def _read_payload(path: Path, device: str | torch.device) -> dict:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign data; its advice is pages long
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CheckpointError(f"not a readable ActiveSeg checkpoint: {path} ({why})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"not an ActiveSeg checkpoint: {path} (a torch file without format={FORMAT!r})")
    if int(payload.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}; this code reads up to {VERSION}"
        )
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device | None = None) -> tuple[UNet2D, dict]:
    """Rebuild the model (eval mode, on ``device`` or CPU) and return ``(model, info)``.

    ``info`` has keys config, classes, history, meta, normalization, format, version.
    """
    path = Path(path)
    device = torch.device(device) if device is not None else torch.device("cpu")
    payload = _read_payload(path, "cpu")
    try:
        model = UNet2D.from_config(payload["config"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not match the stored architecture: {exc}") from exc
    model.to(device).eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    info.setdefault("normalization", dict(DEFAULT_NORMALIZATION))
    return model, info
