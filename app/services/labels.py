"""Painting: a plotly stroke -> rasterised mask -> LabelStore.paint, plus undo, counts, effort.

Coordinates follow layouts.viewer: pixel (r, c) is centred at figure point (x=c, y=r),
which is also ml.labels.rasterize's convention, so paths go to the rasteriser unchanged.
A stroke inside a suggested patch (same volume and z) marks that suggestion labeled and
records its effort (first/last stroke time, stroke count; ``app.services.effort``).
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from app.config import Config
from app.db import session_scope
from app.errors import UserError
from app.models import utcnow
from app.services import effort, projects

MAX_BRUSH = 200.0
MIN_BRUSH = 1.5   # radius 0.75 > half a pixel diagonal: every click paints at least its nearest pixel


def shape_to_path(shape: dict | str) -> str:
    """SVG path of a plotly shape: 'path' shapes as-is, rect/line/circle converted."""
    if isinstance(shape, str):
        return shape
    kind = shape.get("type", "path")
    if kind == "path" and shape.get("path"):
        return shape["path"]
    try:
        x0, y0, x1, y1 = (float(shape[k]) for k in ("x0", "y0", "x1", "y1"))
    except (KeyError, TypeError, ValueError):
        raise UserError("That shape has no coordinates; draw with the brush or the outline tool.") from None
    if kind == "rect":
        return f"M{x0},{y0}L{x1},{y0}L{x1},{y1}L{x0},{y1}Z"
    if kind == "line":
        return f"M{x0},{y0}L{x1},{y1}"
    if kind == "circle":
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
        pts = [(cx + rx * math.cos(t), cy + ry * math.sin(t)) for t in (2 * math.pi * i / 48 for i in range(48))]
        return "M" + "L".join(f"{x},{y}" for x, y in pts) + "Z"
    raise UserError(f"Shapes of type {kind!r} cannot be painted.")


def new_strokes(relayout: dict | None) -> list[str]:
    """SVG paths drawn in this relayout event: new shapes (``shapes``) or edited ones (``shapes[N].path``)."""
    if not relayout:
        return []
    out: list[str] = []
    for key, val in relayout.items():
        if key == "shapes" and isinstance(val, list):
            out += [shape_to_path(s) for s in val if isinstance(s, dict) and s.get("name") != "outline"
                    and s.get("editable", True) is not False]
        elif key.startswith("shapes[") and key.endswith("].path") and isinstance(val, str):
            out.append(val)
    return out


def _check_value(value: int, n_classes: int) -> int:
    if value is None or not 0 <= int(value) <= n_classes:
        raise UserError(f"Pick a class (1..{n_classes}) or the eraser before painting.")
    return int(value)


def apply_stroke(config: Config, vid: int, z: int, path: str, value: int, width: float,
                 fill: bool | None = None) -> dict:
    """Rasterise one stroke on slice z and store it (value 0 erases); returns the effort record."""
    from ml.labels.rasterize import rasterize_path_bbox

    projects.require_edit(config, vid)
    store = projects.label_store(config, vid)
    zmax, h, w = store.shape
    if not 0 <= int(z) < zmax:
        raise UserError(f"Slice {z} is outside 0..{zmax - 1}.")
    value = _check_value(value, len(store.classes))
    width = min(max(float(width or 1.0), MIN_BRUSH), MAX_BRUSH)
    try:
        crop, y0, x0 = rasterize_path_bbox(path, (h, w), width, fill=fill)
    except ValueError as e:
        raise UserError(f"Could not read the stroke: {e}") from e
    n = int(crop.sum())
    if n == 0:
        return {"stroke_id": None, "n_pixels": 0, "bbox": None, "suggestions": []}
    closed = path.rstrip().endswith(("Z", "z"))
    kind = "erase" if value == 0 else ("fill" if (fill or (fill is None and closed)) else "stroke")
    sid = store.paint(int(z), crop, value, y0=y0, x0=x0, kind=kind)     # the store's log is the one stroke log
    bbox = [y0, y0 + crop.shape[0], x0, x0 + crop.shape[1]]
    with session_scope(config) as s:          # suggestions it touches become labeled, their effort updated
        touched = effort.record_stroke_effort(s, vid, int(z), bbox, utcnow())
    return {"stroke_id": sid, "n_pixels": n, "bbox": bbox, "suggestions": touched}


def undo(config: Config, vid: int, z: int | None = None) -> dict | None:
    """Revert the newest stroke of this volume (on slice ``z`` when given): ``{id, z, value, pixels}``
    of what was undone, or None when nothing is left to undo there."""
    projects.require_edit(config, vid)
    return projects.label_store(config, vid).undo(z)


def redo(config: Config, vid: int, z: int | None = None) -> dict | None:
    """Paint again the newest stroke undone on slice ``z`` (None when there is none, or a stroke
    painted there since ended its redo): ``{id, z, value, pixels}``."""
    projects.require_edit(config, vid)
    return projects.label_store(config, vid).redo(z)


def counts(config: Config, vid: int) -> list[dict]:
    """Labeled pixels per class: [{value, name, color, pixels}]."""
    store = projects.label_store(config, vid)
    c = store.counts()
    return [{"value": i + 1, "name": k["name"], "color": k["color"], "pixels": int(c.get(i + 1, 0))}
            for i, k in enumerate(store.classes)]


def events(config: Config, vid: int) -> list[dict[str, Any]]:
    """The stroke / undo log of a volume, oldest first, as the label store wrote it (the one log)."""
    painted: dict[int, dict] = {}
    out = []
    for i, e in enumerate(projects.label_store(config, vid).events(), start=1):
        if e.get("event") == "paint":
            painted[int(e["id"])] = e
            kind = e.get("kind") or ("erase" if int(e["value"]) == 0 else "stroke")
            out.append({"id": i, "kind": kind, "z": e["z"], "value": e["value"], "n_pixels": e["n_pixels"],
                        "stroke_id": e["id"], "bbox": e.get("bbox"), "created": _iso(e.get("time"))})
        elif e.get("event") in ("undo", "redo"):
            undone = painted.get(int(e["id"]), {})
            out.append({"id": i, "kind": e["event"], "z": undone.get("z"), "value": undone.get("value"), "n_pixels": 0,
                        "stroke_id": e["id"], "bbox": undone.get("bbox"), "created": _iso(e.get("time"))})
    return out


def _iso(t: float | None) -> str:
    return datetime.fromtimestamp(float(t or 0.0), timezone.utc).replace(tzinfo=None).isoformat()


def newest_event_id(config: Any, project_id: int) -> int:
    """The project's label clock: strokes and undos logged on all its volumes (0 when none).

    It only grows (volumes are never removed), so "newer than what a model learned" is ``>``.
    """
    return sum(projects.label_store(config, v["id"]).revision() for v in projects.list_volumes(config, project_id))


def newest_stroke(config: Any, volume_id: int) -> dict | None:
    """``{z, bbox}`` of the volume's newest stroke or erase (an undone one too: its area changed), or None."""
    for e in reversed(projects.label_store(config, volume_id).events()):
        if e.get("event") == "paint" and e.get("bbox"):
            return {"z": int(e["z"]), "bbox": list(e["bbox"])}
    return None
