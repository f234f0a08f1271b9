"""Whole-volume segmentation with the active model, post-processing into objects, object views.

Predictions are written to a temporary folder and swapped in when complete, so the viewer's
overlay (which reads ``predictions.overlay_plane``) never sees a half-written or vanished
prediction, and a cancelled run leaves the previous one in place. Each post-processing
run is a ``Segmentation`` row with its instance labels (Zarr), object table (CSV) and
summary; the panel shows the newest.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd   # at import time: a first import in a request thread races plotly's pandas check
from sqlalchemy import select as sql_select

from app.db import session_scope
from app.errors import NotFound, UserError
from app.models import Segmentation, dumps, loads
from app.services import factory, predictions, projects, training
from app.workspace import Workspace
from ml.files import atomic_write
from ml.postprocess import PostprocessSettings, segment
from ml.progress import CancelFn, ProgressFn, check_cancel, report
from ml.volume import NM3_PER_UM3

MC_PASSES = 8
MAX_MESH_FACES = 60_000      # 3D view budget (~2 MB of figure JSON)
MAX_MESH_STEP = 8
NM2_PER_UM2 = 1e6
UNCERTAINTY_SIDECAR = ".slice_entropy.json"   # next to predictions written before the attr


# --- prediction ---------------------------------------------------------------------------------------
def segment_volume(config: Any, volume_id: int, mc: bool = False, progress: ProgressFn = None,
                   cancel: CancelFn = None) -> dict:
    """Predict every slice with the active model; returns ``{segmentation_id, pred_path, model_id}``."""
    from ml.infer import predict_volume

    info = projects.volume_info(config, volume_id)
    loaded = training.load_active_model(config, info["project_id"])
    if loaded is None:
        raise UserError("No trained model yet: train one in the Training panel first.")
    model, model_id = loaded
    out = Workspace(config.workspace).prediction_path(volume_id, model_id)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    try:
        if config.job_backend == "celery":     # every worker that is up predicts z-chunks (app.services.chunks)
            from app import background
            from app.services import chunks

            chunks.predict_in_chunks(config, volume_id, model, model_id, tmp, MC_PASSES if mc else 0,
                                     lambda tasks: background.send_chunks(config, tasks), progress, cancel)
        else:
            predict_volume(model, projects.open_volume(config, volume_id), tmp, lo=info["lo"], hi=info["hi"],
                           mc_passes=MC_PASSES if mc else 0, device=factory.device_for(config),
                           progress=progress, cancel=cancel,
                           classes=[c["name"] for c in projects.get_classes(config, volume_id)],
                           z_consensus=config.z_consensus)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(f"{tmp}.chunks", ignore_errors=True)
    _swap_in(tmp, out)
    with session_scope(config) as s:
        row = Segmentation(volume_id=volume_id, model_id=model_id, pred_path=str(out),
                           params_json=dumps({"mc_passes": MC_PASSES if mc else 0}))
        s.add(row)
        s.flush()
        return {"segmentation_id": int(row.id), "pred_path": str(out), "model_id": model_id}


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``tmp`` folder (old one renamed away first, then deleted)."""
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _uncertainty_values(path: Path) -> list[float]:
    """Per-slice uncertainty of a prediction. Newer predictions carry it (``slice_entropy`` attr);
    older ones are read once slice by slice and the answer kept in a JSON sidecar next to them."""
    from ml.infer import open_prediction, slice_uncertainty, stored_slice_uncertainty

    group = open_prediction(path)
    values = stored_slice_uncertainty(group)
    if values is not None:
        return [round(float(v), 4) for v in values]
    sidecar = path.with_name(path.name + UNCERTAINTY_SIDECAR)
    try:
        cached = json.loads(sidecar.read_text())
        if len(cached) == group["prob"].shape[1]:
            return cached
    except (OSError, ValueError, TypeError):   # none yet, or unreadable: compute it again
        pass
    out = [round(float(v), 4) for v in slice_uncertainty(group)]
    text = json.dumps(out)
    atomic_write(sidecar, lambda tmp: Path(tmp).write_text(text))
    return out


def slice_uncertainty(config: Any, volume_id: int) -> dict | None:
    """``{values, model_id, worst}``: mean uncertainty of each z slice of the prediction the viewer
    overlays and the most uncertain slice, or None when the volume has no prediction."""
    found = predictions.current(config, int(volume_id))
    if found is None:
        return None
    values = _uncertainty_values(found.path)
    return {"values": values, "model_id": found.model_id, "worst": int(np.argmax(values))}


# --- post-processing -----------------------------------------------------------------------------------
def postprocess_settings(values: Mapping[str, Any] | None, voxel_size: Any = None) -> PostprocessSettings:
    """The user's post-processing choices, checked, a min size in µm³ read at ``voxel_size`` (a UserError says
    what is wrong)."""
    try:
        return PostprocessSettings.parse(values or {}, voxel_size)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def postprocess(config: Any, volume_id: int, settings: Mapping[str, Any] | None = None,
                progress: ProgressFn = None, cancel: CancelFn = None) -> dict:
    """Threshold + connected components (+ core, size filter, split) of the prediction; store instances,
    table, summary. ``settings``: :class:`PostprocessSettings`' fields (a job's params carry them)."""
    from ml.infer import foreground_probability, open_prediction
    from ml.objects import object_table, summary

    vs = projects.volume_info(config, volume_id)["voxel_size"]
    rule = postprocess_settings(settings, vs)
    found = predictions.current(config, volume_id)
    if found is None:
        raise UserError("No prediction yet: press “Segment volume” first.")
    pred_path, model_id = found.path, found.model_id
    group = open_prediction(pred_path)
    nz = int(group["prob"].shape[1])
    fg = np.empty(group["prob"].shape[1:], np.float32)
    for z in range(nz):
        check_cancel(cancel)
        fg[z] = foreground_probability(group, z)
        report(progress, z + 1, nz + 2, phase="reading prediction")
    instances = segment(fg, voxel_size=vs, **rule.as_params())
    check_cancel(cancel)
    report(progress, nz + 1, nz + 2, phase="measuring objects")
    table = object_table(instances, vs)
    summ = {**summary(table), "voxel_size_known": vs is not None}
    params = {**rule.as_params(), "pred_path": str(pred_path)}
    ws = Workspace(config.workspace)
    with session_scope(config) as s:
        row = Segmentation(volume_id=volume_id, model_id=model_id, pred_path=str(pred_path),
                           params_json=dumps(params), summary_json=dumps(summ))
        s.add(row)
        s.flush()
        inst_path = projects.write_zarr(ws.instances_path(row.id), instances, attrs={"voxel_size": vs})
        table_path = ws.segmentation_dir(row.id) / "objects.csv"
        tmp = table_path.with_name(".objects.csv.tmp")
        table.to_csv(tmp, index=False)
        os.replace(tmp, table_path)
        row.instances_path, row.table_path = str(inst_path), str(table_path)
        seg_id = int(row.id)
    report(progress, nz + 2, nz + 2, phase="done")
    return {"segmentation_id": seg_id, "summary": summ, "settings": rule.as_params(), "settings_text": rule.describe(vs)}


def segment_and_measure(config: Any, volume_id: int, mc: bool = False, settings: Mapping[str, Any] | None = None,
                        progress: ProgressFn = None, cancel: CancelFn = None) -> dict:
    """One "Segment" click, one job: predict the volume, then post-process it into objects.

    The post-processing settings are checked first, so a typo does not cost a whole prediction.
    """
    postprocess_settings(settings, projects.volume_info(config, volume_id)["voxel_size"])
    predicted = segment_volume(config, volume_id, mc, progress=progress, cancel=cancel)
    objects = postprocess(config, volume_id, settings, progress=progress, cancel=cancel)
    return {**predicted, **objects, "prediction_id": predicted["segmentation_id"]}


def latest_segmentation_id(config: Any, volume_id: int | None) -> int | None:
    """Newest post-processed segmentation (with objects) of a volume."""
    if volume_id is None:
        return None
    with session_scope(config) as s:
        return s.execute(sql_select(Segmentation.id)
                         .where(Segmentation.volume_id == volume_id, Segmentation.instances_path.isnot(None))
                         .order_by(Segmentation.id.desc()).limit(1)).scalar_one_or_none()


def segmentation_info(config: Any, seg_id: int) -> dict:
    with session_scope(config) as s:
        row = s.get(Segmentation, int(seg_id))
        if row is None:
            raise NotFound(f"Segmentation {seg_id} does not exist.")
        return {"id": row.id, "volume_id": row.volume_id, "model_id": row.model_id, "pred_path": row.pred_path,
                "instances_path": row.instances_path, "table_path": row.table_path,
                "params": loads(row.params_json, {}), "summary": loads(row.summary_json, {})}


def open_instances(config: Any, seg_id: int):
    """The instance label volume (Zarr array, int32) of a post-processed segmentation."""
    import zarr

    info = segmentation_info(config, seg_id)
    if not info["instances_path"] or not Path(info["instances_path"]).exists():
        raise UserError(f"Segmentation {seg_id} has no objects; apply post-processing first.")
    return zarr.open_array(info["instances_path"], mode="r")


def object_table_frame(config: Any, seg_id: int):
    """The stored object table (pandas DataFrame, ml.objects columns)."""
    info = segmentation_info(config, seg_id)
    if not info["table_path"] or not Path(info["table_path"]).exists():
        raise UserError(f"Segmentation {seg_id} has no object table; apply post-processing first.")
    return _read_table(info["table_path"], Path(info["table_path"]).stat().st_mtime_ns).copy()


@functools.lru_cache(maxsize=8)
def _read_table(path: str, _mtime_ns: int):
    """Parsed object tables, kept: the hover line asks for one on every mouse move (callers get copies)."""
    return pd.read_csv(path)


def summary_view(summary: dict) -> dict:
    """Summary in µm³ for display (voxel units when the voxel size is unknown)."""
    scale = NM3_PER_UM3 if summary.get("voxel_size_known", True) else 1.0
    return {"count": int(summary.get("count", 0)), "edge_count": summary.get("edge_count"),
            "total_volume_um3": float(summary.get("total_volume_nm3", 0.0)) / scale,
            "mean_volume_um3": float(summary.get("mean_volume_nm3", 0.0)) / scale,
            "units": "µm³" if summary.get("voxel_size_known", True) else "voxels"}


def object_rows(config: Any, seg_id: int) -> list[dict]:
    """Rows for the object DataTable: id, µm³ volume, µm² surface, voxels, centroid, bbox, and "cut" where the
    volume's edge cuts the object (empty for a table measured before v40, which did not say)."""
    t = object_table_frame(config, seg_id)
    t["edge"] = t["edge"].map({True: "cut", False: ""}) if "edge" in t else ""
    known = segmentation_info(config, seg_id)["summary"].get("voxel_size_known", True)
    t["volume_um3"] = t["volume_nm3"] / (NM3_PER_UM3 if known else 1.0)
    t["surface_um2"] = t["surface_nm2"] / (NM2_PER_UM2 if known else 1.0)
    cols = ["id", "volume_um3", "surface_um2", "voxels", "centroid_z", "centroid_y", "centroid_x",
            "bbox_z0", "bbox_z1", "bbox_y0", "bbox_y1", "bbox_x0", "bbox_x1", "edge"]
    return t[cols].to_dict("records")


def plane_voxel(plane: str, index: int, row: int, col: int) -> tuple[int, int, int]:
    """(z, y, x) of pixel (row, col) of a plane at ``index``."""
    return {"xy": (index, row, col), "xz": (row, index, col), "yz": (row, col, index)}[plane]


def object_at(config: Any, volume_id: int, voxel: tuple[int, int, int]) -> dict:
    """The newest segmentation's object at ``voxel``: ``{id, text}`` (id 0, text "" for none)."""
    seg_id = latest_segmentation_id(config, volume_id)
    if seg_id is None:
        return {"id": 0, "text": ""}
    try:
        oid = int(open_instances(config, seg_id)[voxel])
    except UserError:
        return {"id": 0, "text": ""}
    if oid == 0:
        return {"id": 0, "text": ""}
    t = object_table_frame(config, seg_id)
    hit = t[t["id"] == oid]
    known = segmentation_info(config, seg_id)["summary"].get("voxel_size_known", True)
    if hit.empty:
        return {"id": oid, "text": f"object {oid}"}
    size = (f"{float(hit.iloc[0]['volume_nm3']) / NM3_PER_UM3:.3g} µm³" if known
            else f"{int(hit.iloc[0]['voxels']):,} voxels")
    return {"id": oid, "text": f"object {oid}: {size}"}


def object_nav(config: Any, seg_id: int, object_id: int) -> dict:
    """Viewer target of an object: slice = centroid z, box = its yx bounding box."""
    t = object_table_frame(config, seg_id)
    hit = t[t["id"] == int(object_id)]
    if hit.empty:
        raise NotFound(f"Object {object_id} is not in segmentation {seg_id}.")
    r = hit.iloc[0]
    return {"vid": segmentation_info(config, seg_id)["volume_id"], "z": int(round(r["centroid_z"])),
            "y0": int(r["bbox_y0"]), "y1": int(r["bbox_y1"]), "x0": int(r["bbox_x0"]), "x1": int(r["bbox_x1"]),
            "outline": True, "source": f"object:{int(object_id)}", "t": time.time()}


def object_meshes(config: Any, seg_id: int, max_objects: int = 50, step: int = 2,
                  max_faces: int = MAX_MESH_FACES) -> dict | None:
    """One mesh of the ``max_objects`` largest objects in µm: x, y, z, i, j, k, object id per vertex.

    Decimated by the marching-cubes step; when the mesh has more than ``max_faces`` faces it is
    rebuilt once with a coarser step (up to MAX_MESH_STEP), so the figure stays ~2 MB at most.
    """
    from ml.objects import objects_mesh

    info = segmentation_info(config, seg_id)
    known = info["summary"].get("voxel_size_known", True)
    vs = projects.volume_info(config, info["volume_id"])["voxel_size"]
    inst = np.asarray(open_instances(config, seg_id)[:])
    n = max(1, int(max_objects))
    verts, faces, ids = objects_mesh(inst, vs, max_objects=n, step=step)
    if len(faces) > max_faces and step < MAX_MESH_STEP:
        # faces shrink ~ step**2: jump straight to the power-of-two step that fits the budget
        factor = 2 ** int(np.ceil(np.log2(np.sqrt(len(faces) / max_faces))))
        step = min(MAX_MESH_STEP, step * max(2, factor))
        verts, faces, ids = objects_mesh(inst, vs, max_objects=n, step=step)
    if len(faces) == 0:
        return None
    xyz = np.round(verts * (1e-3 if known else 1.0), 4)
    return {"x": xyz[:, 2].tolist(), "y": xyz[:, 1].tolist(), "z": xyz[:, 0].tolist(), "i": faces[:, 0].tolist(),
            "j": faces[:, 1].tolist(), "k": faces[:, 2].tolist(), "object_id": ids.tolist(),
            "units": "µm" if known else "voxels", "step": step}
