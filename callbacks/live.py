"""Live mode callbacks: a stroke, slice or zoom change starts one update; the newest change wins.

The browser coalesces: a change while an update runs only marks the live state pending, and
when the running update ends (``running`` flips ``LIVE_BUSY``) the browser starts the next one
with the view it shows then. On the server an update stops as soon as a newer stroke is logged
(``app.services.live``), so painting never waits for an old update. The overlays show the live
view through ``LIVE_REV`` (``callbacks.viewer.overlay_url``). Updates, Keep and Discard run as
recorded jobs where every job runs (Dash's background manager: diskcache or Celery).
"""
from __future__ import annotations

from functools import partial

from dash import Input, Output, State, no_update

from app import jobs
from app.models import JobState
from app.config import Config
from app.services import live
from callbacks.viewer import shown_opacity
from layouts import ids
from layouts import ids_panels as pids
from layouts import live as view

POLL_MS = 250                 # background-callback polling: part of the stroke-to-overlay latency

#: (LABELS_REV, VIEW_STATE, relayout, switch, busy, go, pending) -> (go, pending). A zoom or pan is a
#: relayout with axis keys; a stroke's relayout is left to LABELS_REV (it bumps once the stroke is stored).
REQUEST_JS = """function(_rev, state, relayout, on, busy, go, pending) {
    const nu = dash_clientside.no_update;
    const trig = (dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
    if (!on) { return [nu, false]; }
    let want = !!pending;
    for (const t of trig) {
        if (t.startsWith("%(rev)s.") || t.startsWith("%(state)s.") || t.startsWith("%(switch)s.")) { want = true; }
        if (t.startsWith("%(graph)s.") && relayout && Object.keys(relayout).some(k => /^[xy]axis/.test(k))) { want = true; }
    }
    if (!want) { return [nu, false]; }
    if (busy || !state || state.plane !== "xy") { return [nu, true]; }
    const gd = document.querySelector("#%(graph)s .js-plotly-plot");
    const fl = gd && gd._fullLayout;
    const view = fl ? [fl.xaxis.range[0], fl.xaxis.range[1], fl.yaxis.range[0], fl.yaxis.range[1]] : null;
    return [{n: ((go && go.n) || 0) + 1, vid: state.vid, z: state.index, view: view}, false];
}""" % {"rev": ids.LABELS_REV, "state": ids.VIEW_STATE, "switch": ids.LIVE_SWITCH, "graph": ids.GRAPH}


# --- logic (plain functions; tests call these) -------------------------------------------------------
def run_update(config: Config, project_id: int | None, go: dict | None, on: bool) -> tuple:
    """One live update as a job -> (live revision, status line, keep/discard disabled)."""
    if not on or not go or project_id is None:
        return no_update, no_update, no_update
    outcome = jobs.run_job(config, jobs.LIVE_KIND, project_id,
                           partial(live.update, config, int(go["vid"]), int(go["z"]), go.get("view")),
                           params={"z": go["z"], "view": go.get("view")})
    draft = live.draft_info(config, project_id)
    if outcome.status == JobState.FAILED:
        return no_update, view.status_text(draft, error=outcome.error), draft is None
    if outcome.status != "done" or outcome.result["outcome"] != live.Outcome.UPDATED.value:
        return no_update, "Live: a newer change came in; updating…", draft is None
    return outcome.result["rev"], view.status_text(draft, outcome.result), False


def switched(config: Config, project_id: int | None, on: bool) -> tuple:
    """Live on / off -> (live revision, status line, keep/discard disabled); off stops a running update."""
    draft = live.draft_info(config, project_id)
    if not on:
        if project_id is not None:
            jobs.request_cancel(config, kind=jobs.LIVE_KIND, project_id=project_id)
        return None, view.OFF_TEXT, draft is None
    return no_update, view.status_text(draft), draft is None


def keep_draft(config: Config, project_id: int | None) -> tuple:
    """Keep -> (status line, keep/discard disabled, versions refresh marker)."""
    if project_id is None:
        return "Live: select a project first.", True, no_update
    outcome = jobs.run_job(config, jobs.LIVE_KIND, project_id, partial(live.keep, config, project_id),
                           params={"action": "keep"})
    if not outcome.ok:
        return f"Live: {outcome.error or 'keeping was cancelled.'}", no_update, no_update
    res = outcome.result
    gt = res["metrics"].get("gt_iou")
    text = f"Kept the draft as model v{res['model_id']} (active)" + (
        f"; IoU vs ground truth {gt:.3f}" if gt is not None else "") + ". Live goes on from it."
    return text, True, outcome.job_id


def discard_draft(config: Config, project_id: int | None) -> tuple:
    """Discard -> (live revision None, status line, keep/discard disabled)."""
    if project_id is None or not live.discard(config, project_id):
        return no_update, "Live: there is no draft to discard.", True
    return None, "Live: draft discarded; the overlays show the active version again.", True


# --- registration ----------------------------------------------------------------------------------------
def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)
    app.clientside_callback(
        REQUEST_JS,
        Output(ids.LIVE_GO, "data"), Output(ids.LIVE_PENDING, "data"),
        Input(ids.LABELS_REV, "data"), Input(ids.VIEW_STATE, "data"), Input(ids.GRAPH, "relayoutData"),
        Input(ids.LIVE_SWITCH, "value"), Input(ids.LIVE_BUSY, "data"),
        State(ids.LIVE_GO, "data"), State(ids.LIVE_PENDING, "data"), prevent_initial_call=True,
    )

    @app.callback(
        Output(ids.LIVE_REV, "data"), Output(ids.LIVE_STATUS, "children"), Output(ids.LIVE_KEEP, "disabled"),
        Input(ids.LIVE_GO, "data"), State(ids.PROJECT_STORE, "data"), State(ids.LIVE_SWITCH, "value"),
        background=True, interval=POLL_MS, running=[(Output(ids.LIVE_BUSY, "data"), True, False)],
        prevent_initial_call=True,
    )
    def _update(go, project_id, on):
        return run_update(config, project_id, go, on)

    @app.callback(
        Output(ids.LIVE_REV, "data", allow_duplicate=True),
        Output(ids.LIVE_STATUS, "children", allow_duplicate=True),
        Output(ids.LIVE_KEEP, "disabled", allow_duplicate=True),
        Input(ids.LIVE_SWITCH, "value"), Input(ids.PROJECT_STORE, "data"), prevent_initial_call="initial_duplicate",
    )
    def _switch(on, project_id):
        return switched(config, project_id, bool(on))

    @app.callback(Output(ids.LIVE_DISCARD, "disabled"), Input(ids.LIVE_KEEP, "disabled"))
    def _discard_enabled(keep_disabled):
        return keep_disabled

    @app.callback(
        Output(ids.LIVE_STATUS, "children", allow_duplicate=True),
        Output(ids.LIVE_KEEP, "disabled", allow_duplicate=True),
        Output(pids.TR_DONE, "data", allow_duplicate=True),
        Input(ids.LIVE_KEEP, "n_clicks"), State(ids.PROJECT_STORE, "data"),
        background=True, interval=POLL_MS, prevent_initial_call=True,
        running=[(Output(ids.LIVE_KEEP, "children"), "Keeping…", "Keep")],
    )
    def _keep(_n, project_id):
        return keep_draft(config, project_id)

    @app.callback(
        Output(ids.LIVE_REV, "data", allow_duplicate=True),
        Output(ids.LIVE_STATUS, "children", allow_duplicate=True),
        Output(ids.LIVE_KEEP, "disabled", allow_duplicate=True),
        Input(ids.LIVE_DISCARD, "n_clicks"), State(ids.PROJECT_STORE, "data"), prevent_initial_call=True,
    )
    def _discard(_n, project_id):
        return discard_draft(config, project_id)

    @app.callback(Output(ids.OVERLAY_PREDICTION, "value", allow_duplicate=True), Input(ids.LIVE_REV, "data"),
                  State(ids.OVERLAY_PREDICTION, "value"), prevent_initial_call=True)
    def _show(rev, opacity):
        return shown_opacity(rev, opacity)
