"""The one answer to "which prediction is current": for the overlay, the uncertainty strip and objects.

The current prediction of a volume is the active model's. Its whole-volume Zarr (written by
``segmentation.segment_volume``) answers any plane; until the volume is segmented, an xy
slice is predicted on demand (``previews``), so a newly trained model shows on the slice the
user looks at. Both are read in z consensus (``ml.infer.consensus_plane``, ``previews.slice_prob``:
each slice mixed with its neighbours, as the objects are measured). The overlays never show an
older model's output while a newer one is active (only with no active model at all); post-processing
and the uncertainty strip (``current``) fall back to the newest complete whole-volume prediction,
since they need a whole volume.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select as sql_select

from app.db import session_scope
from app.models import Segmentation
from app.services import previews, projects, training
from app.workspace import Workspace


@dataclass(frozen=True)
class Current:
    """A complete whole-volume prediction and the model that wrote it."""

    path: Path
    model_id: int | None


def is_complete(path: Path) -> bool:
    """True when ``path`` is a prediction store whose every slice was written."""
    try:
        from ml.infer import open_prediction

        open_prediction(path)
        return True
    except Exception:  # missing, unreadable or unfinished: not a usable prediction
        return False


def of_model(config: Any, volume_id: int, model_id: int) -> Current | None:
    """Model ``model_id``'s complete whole-volume prediction of the volume, or None."""
    path = Workspace(config.workspace).prediction_path(volume_id, model_id)
    return Current(path, model_id) if path.exists() and is_complete(path) else None


def _newest_complete(config: Any, volume_id: int) -> Current | None:
    with session_scope(config) as s:
        rows = s.execute(sql_select(Segmentation.pred_path, Segmentation.model_id)
                         .where(Segmentation.volume_id == volume_id, Segmentation.pred_path.isnot(None))
                         .order_by(Segmentation.id.desc())).all()
    for path, model_id in dict.fromkeys(rows):
        if Path(path).exists() and is_complete(Path(path)):
            return Current(Path(path), model_id)
    return None


def current(config: Any, volume_id: int) -> Current | None:
    """The whole-volume prediction to use: the active model's, else the newest complete one."""
    info = projects.volume_info(config, volume_id)
    mid = training.active_model_id(config, info["project_id"])
    found = of_model(config, volume_id, mid) if mid is not None else None
    return found or _newest_complete(config, volume_id)


def array_plane(arr: Any, plane: str, index: int) -> np.ndarray:
    """A plane of a (..., Z, Y, X) array-like (leading channel axes kept)."""
    if plane == "xy":
        return np.asarray(arr[..., index, :, :])
    if plane == "xz":
        return np.asarray(arr[..., :, index, :])
    return np.asarray(arr[..., :, :, index])


def overlay_plane(config: Any, volume_id: int, plane: str, index: int,
                  model_id: int | None = None) -> dict[str, np.ndarray] | None:
    """``{"prob": (C, h, w)[, "entropy": (h, w)]}`` of a plane for the overlays, or None.

    ``model_id`` asks for that model's whole-volume prediction only. Otherwise the active
    model's: its whole-volume prediction, else (xy only) its on-demand slice preview.
    """
    import zarr

    if model_id is not None:
        found = of_model(config, volume_id, model_id)
    else:
        info = projects.volume_info(config, volume_id)
        active = training.active_model_id(config, info["project_id"])
        found = of_model(config, volume_id, active) if active is not None else _newest_complete(config, volume_id)
        if found is None and active is not None:
            prob = previews.slice_prob(config, volume_id, active, index) if plane == "xy" else None
            return None if prob is None else {"prob": prob}
    if found is None:
        return None
    from ml.infer import consensus_plane

    group = zarr.open_group(str(found.path), mode="r")
    out = {"prob": consensus_plane(group, plane, index)}
    if "entropy" in set(group.array_keys()):
        out["entropy"] = array_plane(group["entropy"], plane, index)
    return out
