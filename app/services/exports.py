"""Exports for other tools: volumes as TIFF / OME-Zarr (zipped) / NRRD, tables as CSV, patch pairs, models.

Every export is written into the workspace ``exports/`` folder under a temporary name and
renamed when complete (a download never picks up a half-written file); the callback then
sends the finished file. Volumes are streamed slice by slice through lazy views, so an
export never needs the whole volume in memory.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.db import session_scope
from app.errors import UserError
from app.models import ALRound, Suggestion, SuggestionState
from app.services import effort, projects, segmentation, training
from app.workspace import Workspace
from ml.active.pool import Patch, labeled_grid_patches
from ml.io.readers_axes import MappedView
from ml.progress import CancelFn, ProgressFn, check_cancel, report

VOLUME_EXPORTS = ("segmentation", "instances", "labels")
VOLUME_FORMATS = ("tiff", "ome-zarr", "nrrd")
EXTENSIONS = {"tiff": ".tif", "ome-zarr": ".ome.zarr.zip", "nrrd": ".nrrd", "csv": ".csv", "zip": ".zip",
              "pt": ".pt"}
TOKEN_BYTES = 12     # 96 random bits in every export's name (16 URL-safe characters)
FORMATS = {"segmentation": VOLUME_FORMATS, "instances": VOLUME_FORMATS, "labels": VOLUME_FORMATS,
           "objects": ("csv",), "effort": ("csv",), "patches": ("zip",), "checkpoint": ("pt",)}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "volume"


def export_filename(volume_name: str, what: str, fmt: str) -> str:
    """``<volume>_<what>_<time>_<token><ext>``: readable, but only whoever ran the export knows the name
    (the ``/exports/<name>`` route serves any finished file by name, so a guessable one would leak it)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{_safe(volume_name)}_{what}_{stamp}_{secrets.token_urlsafe(TOKEN_BYTES)}{EXTENSIONS[fmt]}"


def _check(what: str, fmt: str) -> None:
    if what not in FORMATS:
        raise UserError(f"Unknown export {what!r}; choose one of: {', '.join(FORMATS)}.")
    if fmt not in FORMATS[what]:
        raise UserError(f"{what} can be exported as {', '.join(FORMATS[what])}, not {fmt!r}.")


# --- sources -------------------------------------------------------------------------------------------
def _instances_dtype(instances: Any) -> np.dtype:
    """Smallest unsigned type that holds every object id (16-bit opens everywhere, incl. Fiji)."""
    top = max((int(np.asarray(instances[z]).max(initial=0)) for z in range(instances.shape[0])), default=0)
    return np.dtype(np.uint16 if top < 2**16 else np.uint32)


def volume_source(config: Any, volume_id: int, what: str) -> Any:
    """The lazy (Z, Y, X) array to export for ``what`` (segmentation | instances | labels); read by slabs."""
    if what == "labels":
        return projects.label_store(config, volume_id)
    seg_id = segmentation.latest_segmentation_id(config, volume_id)
    if seg_id is None:
        raise UserError("No segmentation yet: segment the volume and apply post-processing first.")
    inst = segmentation.open_instances(config, seg_id)
    if what == "instances":
        dtype = _instances_dtype(inst)
        return MappedView(inst, lambda a: a.astype(dtype), dtype)
    return MappedView(inst, lambda a: a > 0, np.uint8)


# --- writers -------------------------------------------------------------------------------------------
def _write_volume(path: Path, data: Any, fmt: str, voxel_size: Any, name: str, arc_root: str,
                  progress: ProgressFn = None, cancel: CancelFn = None) -> None:
    """One volume in ``fmt``; the writers stream slabs and report progress themselves."""
    from ml.io import export as writers

    if fmt == "tiff":
        writers.write_tiff(path, data, voxel_size, progress=progress, cancel=cancel)
    elif fmt == "nrrd":
        writers.write_nrrd(path, data, voxel_size, progress=progress, cancel=cancel)
    else:
        folder = path.with_name(path.name[: -len(".zip")] + ".dir")
        try:
            writers.write_ome_zarr(folder, data, voxel_size, name, progress=progress, cancel=cancel)
            zip_folder(folder, path, arc_root=arc_root)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def zip_folder(folder: Path, out: Path, arc_root: str) -> Path:
    """Zip ``folder`` (stored, chunks are already compressed) with paths under ``arc_root``/."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"{arc_root}/{f.relative_to(folder).as_posix()}")
    return out


def labeled_patches(config: Any, volume_id: int, grid: int = training.GRID) -> list:
    """Labeled patches (export pairs; what coreset and typiclust steer away from): labeled AL suggestions,
    else grid tiles holding labels."""
    with session_scope(config) as s:
        rows = (s.query(Suggestion.z, Suggestion.y, Suggestion.x, Suggestion.size)
                .join(ALRound, ALRound.id == Suggestion.round_id)
                .filter(ALRound.volume_id == volume_id, Suggestion.status == SuggestionState.LABELED)
                .order_by(Suggestion.id).all())
    patches = list(dict.fromkeys(Patch(*(int(v) for v in r)) for r in rows))
    if patches:
        return patches
    return labeled_grid_patches(projects.label_store(config, volume_id), grid)


def _write_patches(config: Any, volume_id: int, path: Path, arc_root: str) -> None:
    from ml.io.export import write_patch_pairs

    patches = labeled_patches(config, volume_id)
    if not patches:
        raise UserError("Nothing is labeled in this volume yet: there are no patches to export.")
    folder = path.with_name(path.name + ".dir")
    try:
        write_patch_pairs(folder, projects.open_volume(config, volume_id), projects.label_store(config, volume_id),
                          patches)
        zip_folder(folder, path, arc_root=arc_root)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_objects_csv(config: Any, volume_id: int, path: Path) -> None:
    seg_id = segmentation.latest_segmentation_id(config, volume_id)
    if seg_id is None:
        raise UserError("No object table yet: segment the volume and apply post-processing first.")
    table = segmentation.object_table_frame(config, seg_id)
    table["volume_um3"] = table["volume_nm3"] / segmentation.NM3_PER_UM3
    table.to_csv(path, index=False)


def _write_checkpoint(config: Any, project_id: int, path: Path) -> None:
    mid = training.active_model_id(config, project_id)
    if mid is None:
        raise UserError("No trained model yet: train one first.")
    src = training.list_versions(config, project_id)
    src_path = next(v["path"] for v in src if v["id"] == mid)
    shutil.copyfile(src_path, path)


# --- the job -------------------------------------------------------------------------------------------
def export(config: Any, volume_id: int, what: str, fmt: str, progress: ProgressFn = None,
           cancel: CancelFn = None) -> dict:
    """Write one export into the workspace exports folder; returns ``{path, filename}``."""
    _check(what, fmt)
    info = projects.volume_info(config, volume_id)
    final = Workspace(config.workspace).exports_dir() / export_filename(info["name"], what, fmt)
    tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
    arc_root = final.name[: -len(".zip")] if final.name.endswith(".zip") else final.stem
    report(progress, 0, 1, phase=f"exporting {what}")
    check_cancel(cancel)
    try:
        if what in VOLUME_EXPORTS:
            data = volume_source(config, volume_id, what)
            _write_volume(tmp, data, fmt, info["voxel_size"], f"{info['name']} {what}", arc_root, progress, cancel)
        elif what == "objects":
            _write_objects_csv(config, volume_id, tmp)
        elif what == "effort":
            tmp.write_text(effort.effort_csv(config, info["project_id"]))
        elif what == "patches":
            _write_patches(config, volume_id, tmp, arc_root)
        else:
            _write_checkpoint(config, info["project_id"], tmp)
        check_cancel(cancel)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    report(progress, 1, 1, phase="done")
    return {"path": str(final), "filename": final.name}


def resolve_export(config: Any, filename: str) -> Path:
    """A finished export by file name (refuses anything outside the exports folder)."""
    folder = Workspace(config.workspace).exports_dir()
    path = (folder / Path(str(filename)).name).resolve()
    if path.parent != folder.resolve() or not path.is_file():
        raise UserError(f"Export {filename!r} is not available (any more).")
    return path
