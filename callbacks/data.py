"""Data panel callbacks: thin wrappers around app.services.projects; errors become alerts."""
from __future__ import annotations

from typing import Any

from dash import ALL, Input, Output, State, ctx, no_update

from app.config import Config
from app.errors import user_message
from app.services import pretraining, projects, sharing
from app.services.pretraining import PretrainState
from layouts import data as view
from layouts import ids
from layouts.format import plural

NO_ALERT = ("", False)


def _alert(exc: BaseException) -> tuple[str, bool]:
    return user_message(exc), True


# --- logic (plain functions; tests call these) -------------------------------------------------------
def projects_view(config: Config, trigger: Any, name: str | None, stored: int | None):
    """-> (options, selected id, alert text, alert open, name box value)."""
    alert, name_out, selected = NO_ALERT, no_update, stored
    if trigger == ids.PROJECT_CREATE:
        try:
            selected = projects.create_project(config, name or "")["id"]
            name_out = ""
        except Exception as e:  # noqa: BLE001 - shown to the user
            alert = _alert(e)
    rows = projects.list_projects(config)
    known = {p["id"] for p in rows}
    if selected not in known:
        selected = rows[0]["id"] if rows else None
    return [{"label": p["name"], "value": p["id"]} for p in rows], selected, *alert, name_out


def sharing_view(config: Config, trigger: Any, project_id: int | None, name: str | None, edit: bool):
    """-> (box hidden, who-sees-it text, alert text, alert open, alert colour); single-user mode: hidden."""
    if not config.auth_enabled or project_id is None:
        return True, "", *NO_ALERT, "danger"
    alert, colour = NO_ALERT, "danger"
    try:
        if trigger == ids.SHARE_ADD:
            sharing.share(config, int(project_id), name or "", edit=bool(edit))
            alert, colour = (f"Shared with {name} ({'may edit' if edit else 'read only'}).", True), "success"
        elif trigger == ids.SHARE_REMOVE:
            sharing.unshare(config, int(project_id), name or "")
            alert, colour = (f"No longer shared with {name}.", True), "success"
    except Exception as e:  # noqa: BLE001 - shown to the user (not the owner, unknown user, ...)
        alert = _alert(e)
    try:
        info = sharing.project_sharing(config, int(project_id))
    except Exception as e:  # noqa: BLE001
        return False, "", *_alert(e), "danger"
    return False, view.sharing_text(info), *alert, colour


def volumes_view(config: Config, trigger: Any, project_id: int | None, path: str | None, dataset: str | None,
                 contents, filenames, current: int | None, auto_pretrain: bool = False):
    """-> (options, selected id, alert text, alert open, alert colour).

    ``auto_pretrain`` (the Data panel's switch): start pre-training an added volume in the background.
    """
    alert, color, selected = NO_ALERT, "danger", current
    try:
        rec, verb = None, ""
        if trigger == ids.VOLUME_ADD:
            rec, verb = projects.add_volume_from_path(config, project_id, path or "", dataset=dataset or None), "Added"
        elif trigger == ids.VOLUME_UPLOAD and contents:
            rec, verb = projects.add_volume_from_upload(config, project_id, filenames, contents), "Uploaded"
        if rec is not None:
            text = f"{verb} {rec['name']} {tuple(rec['shape'])}.{pretrain_started(config, rec['id'], auto_pretrain)}"
            selected, alert, color = rec["id"], (text, True), "success"
    except Exception as e:  # noqa: BLE001 - shown to the user
        alert = _alert(e)
    rows = projects.list_volumes(config, project_id)
    if selected not in {v["id"] for v in rows}:
        selected = rows[0]["id"] if rows else None
    opts = [{"label": f"{v['name']}  {'x'.join(map(str, v['shape']))}", "value": v["id"]} for v in rows]
    return opts, selected, *alert, color


def pretrain_started(config: Config, vid: int, auto: bool) -> str:
    """Start pre-training a new volume when ``auto``; the sentence for the alert ("" when off)."""
    if not auto:
        return ""
    try:
        return f" Pre-training it in the background (job {pretraining.start(config, vid)})."
    except Exception as e:  # noqa: BLE001 - the volume was added all the same
        return f" Pre-training did not start: {user_message(e)}"


def pretrain_text(st: pretraining.PretrainStatus) -> tuple[str, str, str]:
    """-> (status text, text tone, start-button label) for a volume's pre-training status."""
    steps = plural(st.steps, "step") if st.steps is not None else ""
    if st.state is PretrainState.RUNNING:
        return f"{st.phase}, {st.percent or 0:.0f}% (job {st.job_id})", "primary", "Pre-train"
    if st.state is PretrainState.DONE:
        tone, text = "success", f"done ({steps}); new models start from it"
        if not st.fits:
            tone, text = "warning-emphasis", f"done ({steps}) for another model size; new models start from scratch"
        return text, tone, "Pre-train again"
    if st.state is PretrainState.PARTIAL:
        return f"stopped{f' at {steps}' if steps else ''}, resumable", "warning-emphasis", "Resume"
    if st.state is PretrainState.FAILED:
        return (f"failed: {st.error}" if st.job_id else st.error or "cannot pre-train"), "danger", "Pre-train"
    return "not yet", "muted", "Pre-train"


def pretrain_view(config: Config, trigger: Any, vid: int | None):
    """-> (status children, button label, button disabled); a click on the button starts/resumes the job."""
    if vid is None:
        return view.pretrain_status("no volume selected"), "Pre-train", True
    try:
        if trigger == ids.PRETRAIN_START:
            pretraining.start(config, vid)
        st = pretraining.status(config, vid)
    except Exception as e:  # noqa: BLE001 - shown to the user
        return view.pretrain_status(user_message(e), "danger"), "Pre-train", False
    text, tone, label = pretrain_text(st)
    return view.pretrain_status(text, tone), label, st.active


def volume_view(config: Config, trigger: Any, vid: int | None, vz, vy, vx):
    """-> (volume store data, info children, z, y, x, alert text, alert open)."""
    if vid is None:
        return None, view.volume_facts(None), None, None, None, *NO_ALERT
    alert = NO_ALERT
    try:
        if trigger == ids.VOXEL_SAVE:
            projects.set_voxel_size(config, vid, (vz, vy, vx))
        info = projects.volume_info(config, vid)
        info["vmin"], info["vmax"] = projects.display_range(config, vid)
    except Exception as e:  # noqa: BLE001 - shown to the user
        return no_update, no_update, no_update, no_update, no_update, *_alert(e)
    vs = info.get("voxel_size") or [None, None, None]
    return info, view.volume_facts(info), vs[0], vs[1], vs[2], *alert


def classes_view(config: Config, trigger: Any, vid: int | None, new_name: str | None,
                 names: list | None, colors: list | None):
    """-> (class rows, classes store, alert text, alert open, new-name box value)."""
    if vid is None:
        return [], None, *NO_ALERT, no_update
    alert, clear = NO_ALERT, no_update
    try:
        if trigger == ids.CLASS_ADD:
            projects.add_class(config, vid, (new_name or "").strip())
            clear = ""
        elif trigger == ids.CLASS_SAVE and names:
            projects.set_classes(config, vid, [{"name": n, "color": c} for n, c in zip(names, colors or [])])
    except Exception as e:  # noqa: BLE001 - shown to the user
        alert = _alert(e)
    classes = projects.get_classes(config, vid)
    return view.class_rows(classes), classes, *alert, clear


def roots_note(config: Config) -> str:
    roots = ", ".join(str(r) for r in config.data_roots) or "none"
    return f"Allowed server folders: {roots}. Uploads up to {config.max_upload_mb} MB."


# --- wiring -------------------------------------------------------------------------------------------
def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)

    @app.callback(
        Output(ids.PROJECT_SELECT, "options"), Output(ids.PROJECT_SELECT, "value"),
        Output(ids.PROJECT_ALERT, "children"), Output(ids.PROJECT_ALERT, "is_open"),
        Output(ids.PROJECT_NAME, "value"), Output(ids.DATA_ROOTS_NOTE, "children"),
        Input(ids.URL, "pathname"), Input(ids.PROJECT_CREATE, "n_clicks"), Input(ids.PROJECT_NAME, "n_submit"),
        State(ids.PROJECT_NAME, "value"), State(ids.PROJECT_STORE, "data"),
    )
    def on_projects(_path, _n, _submit, name, stored):
        trigger = ids.PROJECT_CREATE if ctx.triggered_id == ids.PROJECT_NAME else ctx.triggered_id
        return *projects_view(config, trigger, name, stored), roots_note(config)

    @app.callback(
        Output(ids.SHARE_BOX, "hidden"), Output(ids.SHARE_INFO, "children"),
        Output(ids.SHARE_ALERT, "children"), Output(ids.SHARE_ALERT, "is_open"), Output(ids.SHARE_ALERT, "color"),
        Input(ids.PROJECT_STORE, "data"), Input(ids.SHARE_ADD, "n_clicks"), Input(ids.SHARE_REMOVE, "n_clicks"),
        State(ids.SHARE_NAME, "value"), State(ids.SHARE_EDIT, "value"),
    )
    def on_sharing(project_id, _add, _remove, name, edit):
        return sharing_view(config, ctx.triggered_id, project_id, name, edit)

    @app.callback(Output(ids.PROJECT_STORE, "data"), Input(ids.PROJECT_SELECT, "value"),
                  prevent_initial_call=True)
    def on_project_selected(pid):
        return pid

    @app.callback(
        Output(ids.VOLUME_SELECT, "options"), Output(ids.VOLUME_SELECT, "value"),
        Output(ids.VOLUME_ALERT, "children"), Output(ids.VOLUME_ALERT, "is_open"), Output(ids.VOLUME_ALERT, "color"),
        Input(ids.PROJECT_SELECT, "value"), Input(ids.VOLUME_ADD, "n_clicks"), Input(ids.VOLUME_UPLOAD, "contents"),
        State(ids.VOLUME_UPLOAD, "filename"), State(ids.VOLUME_PATH, "value"), State(ids.VOLUME_DATASET, "value"),
        State(ids.VOLUME_SELECT, "value"), State(ids.PRETRAIN_AUTO, "value"),
    )
    def on_volumes(pid, _n, contents, filenames, path, dataset, current, auto):
        return volumes_view(config, ctx.triggered_id, pid, path, dataset, contents, filenames, current,
                            bool(auto))

    @app.callback(Output(ids.PRETRAIN_AUTO, "value"), Input(ids.URL, "pathname"))
    def on_pretrain_default(_path):
        return config.pretrain_auto

    @app.callback(
        Output(ids.PRETRAIN_STATUS, "children"), Output(ids.PRETRAIN_START, "children"),
        Output(ids.PRETRAIN_START, "disabled"),
        Input(ids.VOLUME_SELECT, "value"), Input(ids.PRETRAIN_START, "n_clicks"), Input(ids.JOBS_POLL, "n_intervals"),
    )
    def on_pretrain(vid, _n, _poll):
        return pretrain_view(config, ctx.triggered_id, vid)

    @app.callback(
        Output(ids.VOLUME_STORE, "data"), Output(ids.VOLUME_INFO, "children"),
        Output(ids.VOXEL_Z, "value"), Output(ids.VOXEL_Y, "value"), Output(ids.VOXEL_X, "value"),
        Output(ids.VOLUME_ALERT, "children", allow_duplicate=True),
        Output(ids.VOLUME_ALERT, "is_open", allow_duplicate=True),
        Input(ids.VOLUME_SELECT, "value"), Input(ids.VOXEL_SAVE, "n_clicks"),
        State(ids.VOXEL_Z, "value"), State(ids.VOXEL_Y, "value"), State(ids.VOXEL_X, "value"),
        prevent_initial_call="initial_duplicate",
    )
    def on_volume(vid, _n, vz, vy, vx):
        return volume_view(config, ctx.triggered_id, vid, vz, vy, vx)

    @app.callback(
        Output(ids.CLASS_LIST, "children"), Output(ids.CLASSES_STORE, "data"),
        Output(ids.CLASS_ALERT, "children"), Output(ids.CLASS_ALERT, "is_open"), Output(ids.CLASS_NEW_NAME, "value"),
        Input(ids.VOLUME_SELECT, "value"), Input(ids.CLASS_ADD, "n_clicks"), Input(ids.CLASS_SAVE, "n_clicks"),
        State(ids.CLASS_NEW_NAME, "value"),
        State({"type": ids.CLASS_NAME_TYPE, "index": ALL}, "value"),
        State({"type": ids.CLASS_COLOR_TYPE, "index": ALL}, "value"),
    )
    def on_classes(vid, _a, _s, new_name, names, colors):
        return classes_view(config, ctx.triggered_id, vid, new_name, names, colors)
