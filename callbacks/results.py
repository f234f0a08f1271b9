"""Segmentation and results callbacks: segment (background), post-process, object table, 3D view, jump to object.

"Segment volume" predicts with the active model, then post-processes with the current
settings in the same click, so objects appear without a second step; "Apply" re-runs only
the post-processing. ``SEG_DONE`` tells the viewer to reload its prediction overlay.
"""
from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable

from dash import Input, Output, State, no_update

from app import jobs
from app.config import Config
from app.errors import user_message
from app.services import segmentation
from callbacks.active import IDLE_PROGRESS, outcome_text, progress_adapter, volume_id_of
from layouts import ids
from layouts import ids_panels as pids
from layouts import results as view


# --- logic (plain functions; tests call these) -------------------------------------------------------
def pp_settings(threshold: Any, min_size: Any, unit: Any, split: Any, core: Any) -> dict:
    """The panel's post-processing inputs as :class:`ml.postprocess.PostprocessSettings.parse` reads them (the
    service checks them; an emptied box takes the default: min size 0, no core threshold)."""
    return {"threshold": threshold, "min_size": min_size, "min_size_unit": unit, "split": "split" in (split or []),
            "core_threshold": core}


def unit_choices(volume: dict | None, unit: Any) -> tuple[list, Any]:
    """The min size's units for this volume: µm³ only where its voxel size is known (else it could only fail),
    and a choice of µm³ falls back to voxels there."""
    known = bool(volume and volume.get("voxel_size"))
    return view.min_size_units(known), unit if known or unit != "um3" else "voxels"


def _settings_text(result: dict) -> str:
    """The settings a segmentation was made with, in the service's words (min size in voxels and µm³)."""
    return result["settings_text"]


def run_postprocess(config: Config, volume: dict | None, settings: dict) -> tuple:
    """-> (segmentation id or no_update, status text)."""
    vid = volume_id_of(volume)
    if vid is None:
        return no_update, "Select a volume first."
    outcome = jobs.run_job(config, "segment", volume.get("project_id"), partial(segmentation.postprocess, config),
                           params={"volume_id": vid, **settings, "step": "postprocess"},
                           compute=False, volume_id=vid, settings=settings)
    if not outcome.ok:
        return no_update, outcome_text(outcome, "")
    s = segmentation.summary_view(outcome.result["summary"])
    return outcome.result["segmentation_id"], f"{s['count']} objects ({_settings_text(outcome.result)})."


def run_segment(config: Config, volume: dict | None, mc: Any, settings: dict,
                set_progress: Callable | None = None) -> tuple:
    """-> (status text, overlay revision, segmentation id)."""
    vid = volume_id_of(volume)
    if vid is None:
        return "Select a volume first.", no_update, no_update
    mc = bool(mc)
    outcome = jobs.run_job(config, "segment", volume.get("project_id"),
                           partial(segmentation.segment_and_measure, config), progress_adapter(set_progress),
                           params={"volume_id": vid, "mc": mc, **settings},
                           volume_id=vid, mc=mc, settings=settings)
    if not outcome.ok:
        return outcome_text(outcome, ""), no_update, no_update
    res = outcome.result
    s = segmentation.summary_view(res["summary"])
    rev = f"{res['segmentation_id']}-{int(time.time())}"
    return (f"Segmented with model {res['model_id']}{' (with MC-dropout uncertainty)' if mc else ''}: "
            f"{s['count']} objects ({_settings_text(res)})."), rev, res["segmentation_id"]


def cancel_segment(config: Config, project_id: int | None) -> str:
    n = jobs.request_cancel(config, kind="segment", project_id=project_id)
    return "Stopping after the current slice (the previous prediction stays)…" if n else "Nothing to cancel."


def objects_view(config: Config, volume: dict | None) -> tuple:
    """-> (table rows, summary children, segmentation id shown) of the volume's newest segmentation."""
    seg_id = segmentation.latest_segmentation_id(config, volume_id_of(volume))
    if seg_id is None:
        return [], view.summary_view(None), None
    try:
        info = segmentation.segmentation_info(config, seg_id)
        rows = segmentation.object_rows(config, seg_id)
    except Exception as e:  # noqa: BLE001 - shown to the user
        return [], user_message(e), seg_id
    return rows, view.summary_view(segmentation.summary_view(info["summary"])), seg_id


def mesh_view(config: Config, seg_id: Any, max_objects: Any) -> Any:
    """3D figure of the largest objects (drawn after the table, as meshing takes a moment)."""
    if seg_id is None:
        return view.mesh_figure(None)
    try:
        n = int(max_objects or view.DEFAULT_MESH_N)
        return view.mesh_figure(segmentation.object_meshes(config, int(seg_id), max_objects=n))
    except Exception as e:  # noqa: BLE001 - shown in the figure
        return view.empty_figure("3D objects", user_message(e))


def goto_object(config: Config, seg_id: Any, active_cell: dict | None) -> Any:
    """Navigation request for the clicked row's object (slice = centroid z, box = bbox)."""
    if seg_id is None or not active_cell or active_cell.get("row_id") is None:
        return no_update
    return segmentation.object_nav(config, int(seg_id), int(active_cell["row_id"]))


# --- registration ----------------------------------------------------------------------------------------
def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)

    @app.callback(
        Output(pids.SEG_STATUS, "children"), Output(pids.SEG_DONE, "data"), Output(pids.OBJ_SEG, "data"),
        Input(pids.SEG_RUN, "n_clicks"),
        State(ids.VOLUME_STORE, "data"), State(pids.SEG_MC, "value"), State(pids.PP_THRESHOLD, "value"),
        State(pids.PP_MIN_SIZE, "value"), State(pids.PP_MIN_UNIT, "value"), State(pids.PP_SPLIT, "value"),
        State(pids.PP_CORE, "value"),
        background=True,
        progress=[Output(pids.SEG_PROGRESS, "value"), Output(pids.SEG_PROGRESS, "label")],
        progress_default=IDLE_PROGRESS,
        running=[(Output(pids.SEG_RUN, "disabled"), True, False), (Output(pids.SEG_CANCEL, "disabled"), False, True),
                 (Output(pids.PP_APPLY, "disabled"), True, False)],
        prevent_initial_call=True,
    )
    def _segment(set_progress, _n, volume, mc, threshold, min_size, unit, split, core):
        return run_segment(config, volume, "mc" in (mc or []), pp_settings(threshold, min_size, unit, split, core),
                           set_progress)

    @app.callback(Output(pids.SEG_STATUS, "children", allow_duplicate=True), Input(pids.SEG_CANCEL, "n_clicks"),
                  State(ids.PROJECT_STORE, "data"), prevent_initial_call=True)
    def _cancel(_n, project_id):
        return cancel_segment(config, project_id)

    @app.callback(
        Output(pids.OBJ_SEG, "data", allow_duplicate=True), Output(pids.PP_STATUS, "children"),
        Input(pids.PP_APPLY, "n_clicks"),
        State(ids.VOLUME_STORE, "data"), State(pids.PP_THRESHOLD, "value"), State(pids.PP_MIN_SIZE, "value"),
        State(pids.PP_MIN_UNIT, "value"), State(pids.PP_SPLIT, "value"), State(pids.PP_CORE, "value"),
        background=True,
        running=[(Output(pids.PP_APPLY, "disabled"), True, False), (Output(pids.SEG_RUN, "disabled"), True, False)],
        prevent_initial_call=True,
    )
    def _postprocess(_n, volume, threshold, min_size, unit, split, core):
        return run_postprocess(config, volume, pp_settings(threshold, min_size, unit, split, core))

    @app.callback(Output(pids.PP_MIN_UNIT, "options"), Output(pids.PP_MIN_UNIT, "value"),
                  Input(ids.VOLUME_STORE, "data"), State(pids.PP_MIN_UNIT, "value"))
    def _units(volume, unit):
        return unit_choices(volume, unit)

    @app.callback(Output(pids.OBJ_TABLE, "data"), Output(pids.OBJ_SUMMARY, "children"), Output(pids.OBJ_SHOWN, "data"),
                  Input(pids.OBJ_SEG, "data"), Input(ids.VOLUME_STORE, "data"))
    def _objects(_seg, volume):
        return objects_view(config, volume)

    @app.callback(Output(pids.OBJ_MESH, "figure"), Input(pids.OBJ_SHOWN, "data"), Input(pids.OBJ_MESH_N, "value"))
    def _mesh(seg_id, max_objects):
        return mesh_view(config, seg_id, max_objects)

    @app.callback(Output(pids.NAV_REQUEST, "data", allow_duplicate=True), Input(pids.OBJ_TABLE, "active_cell"),
                  State(pids.OBJ_SHOWN, "data"), prevent_initial_call=True)
    def _goto(cell, seg_id):
        return goto_object(config, seg_id, cell)
