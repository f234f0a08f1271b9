"""Projects, volumes and classes: creating, adding data (path within data roots, upload), editing.

Volumes are opened lazily (``ml.io.readers.open_volume``) and cached per process; uploads
and generated volumes are stored as chunked Zarr in the workspace so every plane reads fast.
"""
from __future__ import annotations

import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from app.config import Config
from app.db import session_scope
from app.errors import NotFound, UserError
from app.models import Project, VolumeRecord, dumps
from app.storage import decode_upload, safe_name, write_zarr  # noqa: F401  (write_zarr: public here too)
from app.workspace import Workspace

_VOL_LOCK = threading.Lock()
_VOLUMES: dict[tuple[int, str], Any] = {}
_STORES: dict[tuple[int, str], Any] = {}
HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


# --- projects -----------------------------------------------------------------------------------------
def create_project(config: Config, name: str) -> dict:
    name = (name or "").strip()
    if not name:
        raise UserError("Give the project a name.")
    if len(name) > 200:
        raise UserError("Project names are at most 200 characters.")
    with session_scope(config) as s:
        if s.query(Project).filter(Project.name == name).first():
            raise UserError(f"A project named {name!r} already exists.")
        p = Project(name=name)
        s.add(p)
        s.flush()
        return {"id": p.id, "name": p.name}


def list_projects(config: Config) -> list[dict]:
    with session_scope(config) as s:
        return [{"id": p.id, "name": p.name} for p in s.query(Project).order_by(Project.id)]


def find_project(config: Config, name: str) -> dict | None:
    with session_scope(config) as s:
        p = s.query(Project).filter(Project.name == name).first()
        return {"id": p.id, "name": p.name} if p else None


def project_info(config: Config, project_id: int) -> dict:
    """``{id, name}`` of a project (in shared mode: one the user may see); NotFound otherwise."""
    with session_scope(config) as s:
        p = s.get(Project, int(project_id))
        if p is None:
            raise NotFound(f"Project {project_id} does not exist (any more).")
        return {"id": p.id, "name": p.name}


def _require_project(s, project_id: int | None) -> Project:
    p = s.get(Project, project_id) if project_id is not None else None
    if p is None:
        raise NotFound("Select or create a project first.")
    return p


# --- volume records -----------------------------------------------------------------------------------
def _volume_dict(v: VolumeRecord) -> dict:
    return {
        "id": v.id, "project_id": v.project_id, "name": v.name, "source_path": v.source_path,
        "stored_path": v.stored_path, "dataset": v.dataset, "shape": list(v.shape), "dtype": v.dtype,
        "voxel_size": list(v.voxel_size) if v.voxel_size else None, "lo": v.lo, "hi": v.hi,
        "gt_path": v.gt_path, "created": v.created.isoformat(timespec="seconds") if v.created else None,
    }


def list_volumes(config: Config, project_id: int | None) -> list[dict]:
    if project_id is None:
        return []
    with session_scope(config) as s:
        q = s.query(VolumeRecord).filter(VolumeRecord.project_id == project_id).order_by(VolumeRecord.id)
        return [_volume_dict(v) for v in q]


def volume_info(config: Config, vid: int) -> dict:
    with session_scope(config) as s:
        v = s.get(VolumeRecord, vid) if vid is not None else None
        if v is None:
            raise NotFound(f"Volume {vid} does not exist (any more).")
        return _volume_dict(v)


def _record_volume(config: Config, project_id: int, name: str, vol, source_path: str | None,
                   stored_path: str, dataset: str | None, voxel_size) -> dict:
    lo, hi = vol.percentiles(1.0, 99.5)
    vs = voxel_size or vol.voxel_size
    with session_scope(config) as s:
        _require_project(s, project_id)
        v = VolumeRecord(project_id=project_id, name=name, source_path=source_path, stored_path=stored_path,
                         dataset=dataset, shape_json=dumps(list(vol.shape)), dtype=str(vol.dtype),
                         voxel_size_json=dumps([float(x) for x in vs]) if vs else None, lo=lo, hi=hi)
        s.add(v)
        s.flush()
        return _volume_dict(v)


# --- data roots ---------------------------------------------------------------------------------------
def check_data_path(config: Config, path: str) -> Path:
    """Resolve a user-typed server path; refuse anything outside the configured data roots."""
    text = (path or "").strip().strip('"').strip("'")
    if not text:
        raise UserError("Type the path of a volume on the server.")
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = config.data_roots[0] / p if config.data_roots else p
    real = p.resolve()
    if not any(real == r or r in real.parents for r in config.data_roots):
        roots = ", ".join(str(r) for r in config.data_roots) or "(none configured)"
        raise UserError(f"{text} is outside the allowed data folders ({roots}). "
                        "Copy the data there or add its folder to APP_DATA_ROOTS.")
    if not real.exists():
        raise UserError(f"{text} does not exist.")
    return real


def _open_path(path: Path | str, dataset: str | None = None, voxel_size=None):
    from ml.io.readers import open_volume

    return open_volume(str(path), dataset=dataset or None, voxel_size=voxel_size)


def _open_new(path: Path | str, dataset: str | None = None, voxel_size=None):
    """A volume the user adds: readable, and large enough to segment (``ml.io.readers.check_segmentable``)."""
    from ml.io.readers import check_segmentable

    return check_segmentable(_open_path(path, dataset, voxel_size))


def add_volume_from_path(config: Config, project_id: int, path: str, dataset: str | None = None,
                         voxel_size: Sequence[float] | None = None, name: str | None = None) -> dict:
    """Register a volume read in place (lazily) from a path inside a data root."""
    real = check_data_path(config, path)
    with session_scope(config) as s:
        _require_project(s, project_id)
    vol = _open_new(real, dataset, voxel_size)
    rec = _record_volume(config, project_id, name or vol.name or real.name, vol, str(real), str(real),
                         dataset or None, voxel_size)
    _ensure_label_store(config, rec)
    return rec


# --- uploads ------------------------------------------------------------------------------------------
def add_volume_from_upload(config: Config, project_id: int, filenames: Sequence[str] | str,
                           contents: Sequence[str] | str, voxel_size=None) -> dict:
    """Save uploaded file(s) (several 2D slices = one stack), read them, keep a Zarr copy in the workspace."""
    if isinstance(filenames, str):
        filenames, contents = [filenames], [contents]  # type: ignore[list-item]
    if not filenames:
        raise UserError("No file was uploaded.")
    with session_scope(config) as s:
        _require_project(s, project_id)
    ws = Workspace(config.workspace)
    tmp = ws.uploads_dir() / uuid.uuid4().hex
    tmp.mkdir()
    try:
        total = 0
        for fn, c in zip(filenames, contents):
            data = decode_upload(c, fn, config.max_upload_bytes - total)
            total += len(data)
            (tmp / safe_name(fn)).write_bytes(data)
        files = sorted(tmp.iterdir())
        src = files[0] if len(files) == 1 else tmp
        vol = _open_new(src, voxel_size=voxel_size)
        name = Path(filenames[0]).stem if len(files) == 1 else f"{Path(filenames[0]).stem}..({len(files)} slices)"
        return add_volume_from_array(config, project_id, name, vol, voxel_size=voxel_size or vol.voxel_size,
                                     source_path=", ".join(filenames))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- stored arrays ------------------------------------------------------------------------------------
def add_volume_from_array(config: Config, project_id: int, name: str, data, voxel_size=None,
                          ground_truth=None, source_path: str | None = None) -> dict:
    """Store an array (or Volume) as Zarr in the workspace; optional dense ground truth beside it."""
    from ml.volume import Volume

    if getattr(data, "ndim", len(getattr(data, "shape", ()))) == 2:
        data = np.asarray(data)[None]
    if len(data.shape) != 3:
        raise UserError(f"A volume needs 2 or 3 axes, got shape {tuple(data.shape)}.")
    ws = Workspace(config.workspace)
    tmp_vol = data if isinstance(data, Volume) else Volume(data, voxel_size=voxel_size, name=name)
    rec = _record_volume(config, project_id, name, tmp_vol, source_path, "", None, voxel_size)
    vid = rec["id"]
    attrs = {"voxel_size": list(voxel_size) if voxel_size else None, "name": name}
    stored = write_zarr(ws.volume_store_path(vid), data, attrs=attrs)
    gt = str(write_zarr(ws.ground_truth_path(vid), ground_truth)) if ground_truth is not None else None
    with session_scope(config) as s:
        v = s.get(VolumeRecord, vid)
        v.stored_path, v.gt_path = str(stored), gt
        rec = _volume_dict(v)
    _ensure_label_store(config, rec)
    return rec


def require_edit(config: Config, vid: int) -> None:
    """Before a file of a volume is written (labels, classes): refuse a read-only share (``app.access``)."""
    from app import access

    with session_scope(config) as s:
        v = s.get(VolumeRecord, vid) if vid is not None else None
        if v is None:
            raise NotFound(f"Volume {vid} does not exist (any more).")
        access.require_edit(s, v.project_id)


def open_volume(config: Config, vid: int):
    """The lazy Volume of a record, cached per process (tiles, painting and jobs share it)."""
    info = volume_info(config, vid)
    key = (vid, info["stored_path"])
    with _VOL_LOCK:
        vol = _VOLUMES.get(key)
    if vol is not None:
        return vol
    vs = info["voxel_size"]
    if info["stored_path"].endswith(".zarr") and Path(info["stored_path"]).parent == Workspace(config.workspace).volume_dir(vid):
        import zarr
        from ml.volume import Volume

        vol = Volume(zarr.open_array(info["stored_path"], mode="r"), voxel_size=vs, path=info["stored_path"], name=info["name"])
    else:
        if not Path(info["stored_path"]).exists():
            raise UserError(f"The file of volume {info['name']!r} is gone: {info['stored_path']}")
        vol = _open_path(info["stored_path"], info["dataset"], vs)
    with _VOL_LOCK:
        _VOLUMES[key] = vol
    return vol


def open_ground_truth(config: Config, vid: int):
    """Dense ground-truth labels of a volume as a zarr array, or None."""
    info = volume_info(config, vid)
    if not info["gt_path"] or not Path(info["gt_path"]).exists():
        return None
    import zarr

    return zarr.open_array(info["gt_path"], mode="r")


def set_voxel_size(config: Config, vid: int, voxel_size: Sequence[float | None]) -> list[float]:
    try:
        vs = [float(v) for v in voxel_size]
    except (TypeError, ValueError) as e:
        raise UserError("Voxel size needs three numbers (z, y, x) in nanometres.") from e
    if len(vs) != 3 or not all(np.isfinite(v) and v > 0 for v in vs):
        raise UserError("Voxel size needs three positive numbers (z, y, x) in nanometres.")
    with session_scope(config) as s:
        v = s.get(VolumeRecord, vid)
        if v is None:
            raise NotFound(f"Volume {vid} does not exist (any more).")
        v.voxel_size_json = dumps(vs)
    with _VOL_LOCK:
        for key, vol in _VOLUMES.items():
            if key[0] == vid:
                vol.voxel_size = tuple(vs)
    return vs


# --- label stores and classes -------------------------------------------------------------------------
def _ensure_label_store(config: Config, rec: dict):
    from ml.labels.store import DEFAULT_CLASSES, LabelStore

    path = Workspace(config.workspace).labels_dir(rec["id"])
    if path.exists():
        return LabelStore.open(path)
    siblings = [v for v in list_volumes(config, rec["project_id"]) if v["id"] != rec["id"]]
    classes = get_classes(config, siblings[0]["id"]) if siblings else DEFAULT_CLASSES
    return LabelStore.create(path, tuple(rec["shape"]), classes=classes)


def label_store(config: Config, vid: int):
    """The LabelStore of a volume (created on first use), cached per process."""
    rec = volume_info(config, vid)      # also when cached: in shared mode this checks the user may see it
    path = Workspace(config.workspace).labels_dir(vid)
    key = (vid, str(path))
    with _VOL_LOCK:
        store = _STORES.get(key)
    if store is None:
        store = _ensure_label_store(config, rec)
        with _VOL_LOCK:
            store = _STORES.setdefault(key, store)
    return store


def get_classes(config: Config, vid: int) -> list[dict]:
    return [dict(c) for c in label_store(config, vid).classes]


def validate_classes(classes: Sequence[dict]) -> list[dict]:
    out = []
    for i, c in enumerate(classes):
        name = str(c.get("name") or "").strip()
        color = str(c.get("color") or PALETTE[i % len(PALETTE)]).strip()
        if not name:
            raise UserError(f"Class {i + 1} needs a name.")
        if not HEX_COLOR.match(color):
            raise UserError(f"Colour {color!r} of class {name!r} is not a #rrggbb colour.")
        out.append({"name": name, "color": color.lower()})
    names = [c["name"].lower() for c in out]
    if len(set(names)) != len(names):
        raise UserError("Class names must be different from each other.")
    if len(out) < 2:
        raise UserError("Keep at least two classes (background and one object class).")
    if len(out) > 254:
        raise UserError("At most 254 classes.")
    return out


def set_classes(config: Config, vid: int, classes: Sequence[dict]) -> list[dict]:
    """Rename/recolour/add classes for every volume of the volume's project (one class list per project)."""
    new = validate_classes(classes)
    require_edit(config, vid)
    old = get_classes(config, vid)
    if len(new) < len(old):
        raise UserError("Classes can be renamed or added, not removed (labels refer to them by number).")
    project_id = volume_info(config, vid)["project_id"]
    for v in list_volumes(config, project_id):
        label_store(config, v["id"]).set_classes(new)
    return new


def add_class(config: Config, vid: int, name: str, color: str | None = None) -> list[dict]:
    classes = get_classes(config, vid)
    classes.append({"name": name, "color": color or PALETTE[len(classes) % len(PALETTE)]})
    return set_classes(config, vid, classes)


def forget_caches() -> None:
    """Drop cached volumes/stores (tests simulating a restart)."""
    with _VOL_LOCK:
        for vol in _VOLUMES.values():
            try:
                vol.close()
            except Exception:  # pragma: no cover
                pass
        _VOLUMES.clear()
        _STORES.clear()


def display_range(config: Config, vid: int) -> tuple[float, float]:
    """Slider bounds for the contrast window: the dtype range for 8-bit, sampled min/max otherwise."""
    info = volume_info(config, vid)
    dt = np.dtype(info["dtype"])
    if dt == np.uint8:
        return 0.0, 255.0
    lo, hi = open_volume(config, vid).percentiles(0.0, 100.0)
    return float(min(lo, info["lo"])), float(max(hi, info["hi"]))
