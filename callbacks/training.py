"""Training panel callbacks: train (background job), live curves from the Job row, versions, activation.

The live figure is drawn from the Job row (history mirrored by ``run_job``), polled by a
``dcc.Interval``: it works with either job backend and survives a page reload.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

from dash import Input, Output, State, ctx, no_update

from app import jobs
from app.models import JobState
from app.config import Config
from app.errors import user_message
from app.services import budget, effort, evaluation, training
from callbacks.active import IDLE_PROGRESS, outcome_text, progress_adapter
from layouts import ids
from layouts import ids_panels as pids
from layouts import training as view
from layouts.format import plural


# --- logic (plain functions; tests call these) -------------------------------------------------------
def run_training(config: Config, project_id: int | None, mode: str, parent_id: Any, epochs: Any, lr: Any,
                 set_progress: Callable | None = None, budget: Any = None) -> tuple[str, Any]:
    """-> (status text, done marker for the versions table)."""
    if project_id is None:
        return "Select a project first.", no_update
    if mode == "continue" and parent_id in (None, ""):
        return "Pick the version to continue from (or choose “New model”).", no_update
    parent = int(parent_id) if mode == "continue" else None
    outcome = jobs.run_job(config, "train", project_id, partial(training.train_model, config, project_id),
                           progress_adapter(set_progress),
                           params={"parent_id": parent, "epochs": epochs, "lr": lr, "budget": budget},
                           parent_id=parent, epochs=epochs, lr=lr, budget=budget)
    if outcome.status == JobState.CANCELLED:
        return ("Cancelled: the best weights so far were kept as an inactive version marked “cancelled” "
                "(activate it if it is good enough)."), outcome.job_id
    return training_status(outcome), outcome.job_id


def training_status(outcome: jobs.JobOutcome) -> str:
    """The status line of a finished training job: steps, the quality estimate (or why there is none), GT IoU."""
    if not outcome.ok:
        return outcome_text(outcome, "")
    res = outcome.result
    metrics = res["metrics"]
    text = (f"Model {res['model_id']} trained ({plural(metrics['steps'], 'step')}) and activated; "
            f"{evaluation.quality_text(metrics)}")
    if metrics.get("gt_iou") is not None:
        text += f"; IoU vs ground truth {view.iou_text(metrics['gt_iou'])}"
    if metrics.get("started_from"):
        text += f"; started from {metrics['started_from']}"
    return text + "."


def budget_options() -> list[dict]:
    """The budget choices: named time budgets, then "by epochs"."""
    return ([{"label": label, "value": name} for name, (label, _) in budget.BUDGETS.items()]
            + [{"label": "by epochs", "value": budget.BY_EPOCHS}])


def estimate_view(config: Config, project_id: int | None, choice: Any) -> str:
    return budget.estimate_text(budget.last_speed(training.list_versions(config, project_id)), choice)


def cancel_training(config: Config, project_id: int | None) -> str:
    n = jobs.request_cancel(config, kind="train", project_id=project_id)
    return "Stopping after the current step…" if n else "Nothing to cancel."


def live_view(config: Config, project_id: int | None, shown_key: Any) -> tuple:
    """-> (figure, heading, key): the newest training job's curves; no_update when nothing changed."""
    job = jobs.latest_job(config, "train", project_id) if project_id is not None else None
    key = [job["id"], job["status"], job["progress"]] if job else []   # [] != the store's initial None
    if key == shown_key:
        return no_update, no_update, no_update
    if job is None:
        return view.live_figure([]), view.LIVE_TITLE, key
    title = f"Training job {job['id']}: {job['status']}"
    if job["status"] == JobState.RUNNING and job["total"]:
        title += f" (step {job['progress']}/{job['total']})"
    return view.live_figure((job["info"] or {}).get("history") or []), title, key


def versions_view(config: Config, project_id: int | None, activate: bool, selected: list | None,
                  rows: list | None) -> tuple:
    """-> (table rows, selected rows, parent options, parent value, efficiency figure, gt note, effort note)."""
    note = ""
    if activate and project_id is not None and selected and rows:
        try:
            training.activate_model(config, project_id, int(rows[selected[0]]["id"]))
        except Exception as e:  # noqa: BLE001 - shown to the user
            note = user_message(e)
    versions = training.list_versions(config, project_id)
    options = [{"label": f"v{v['id']}{' (active)' if v['active'] else ''} "
                         f"est. IoU {view.estimate_text(v['est_iou'], v.get('est_iou_high'))}",
                "value": v["id"]} for v in versions]
    active_id = next((v["id"] for v in versions if v["active"]), versions[0]["id"] if versions else None)
    points = training.efficiency_points(config, project_id)
    active = next((v for v in versions if v["active"]), None)
    quality = f"v{active['id']} (active): {active['quality_text']}. " if active else ""
    gt_note = note or quality + ("IoU vs ground truth: central slab of the volume with reference labels (same for "
                                 "every version)." if training.has_ground_truth(config, project_id) else "")
    return ([view.version_row(v) for v in versions], [], options, active_id, view.efficiency_figure(points), gt_note,
            effort_note(config, project_id))


def effort_note(config: Config, project_id: int | None) -> str:
    """One line of labeling effort for beside the efficiency chart."""
    rounds = effort.round_effort(config, project_id)
    if not rounds:
        return ""
    labeled = sum(r["n_labeled"] for r in rounds)
    strokes = sum(r["n_strokes"] for r in rounds)
    minutes = sum(r["seconds"] for r in rounds) / 60.0
    return (f"Effort: {plural(labeled, 'suggested patch', 'suggested patches')} labeled over "
            f"{plural(len(rounds), 'round')}, {plural(strokes, 'stroke')} inside them, ~{minutes:.1f} min of "
            "painting there (every stroke, inside suggestions or not: the Effort tab).")


# --- registration ----------------------------------------------------------------------------------------
def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)

    @app.callback(
        Output(pids.TR_STATUS, "children"), Output(pids.TR_DONE, "data"),
        Input(pids.TR_TRAIN, "n_clicks"),
        State(ids.PROJECT_STORE, "data"), State(pids.TR_MODE, "value"), State(pids.TR_PARENT, "value"),
        State(pids.TR_EPOCHS, "value"), State(pids.TR_LR, "value"), State(pids.TR_BUDGET, "value"),
        background=True,
        progress=[Output(pids.TR_PROGRESS, "value"), Output(pids.TR_PROGRESS, "label")],
        progress_default=IDLE_PROGRESS,
        running=[(Output(pids.TR_TRAIN, "disabled"), True, False),
                 (Output(pids.TR_CANCEL, "disabled"), False, True)],
        prevent_initial_call=True,
    )
    def _train(set_progress, _n, project_id, mode, parent_id, epochs, lr, choice):
        return run_training(config, project_id, mode, parent_id, epochs, lr, set_progress, choice)

    @app.callback(Output(pids.TR_BUDGET, "options"), Input(ids.PROJECT_STORE, "data"))
    def _budgets(_project_id):
        return budget_options()

    @app.callback(Output(pids.TR_ESTIMATE, "children"), Input(pids.TR_BUDGET, "value"),
                  Input(ids.PROJECT_STORE, "data"), Input(pids.TR_DONE, "data"))
    def _estimate(choice, project_id, _done):
        return estimate_view(config, project_id, choice)

    @app.callback(Output(pids.TR_STATUS, "children", allow_duplicate=True), Input(pids.TR_CANCEL, "n_clicks"),
                  State(ids.PROJECT_STORE, "data"), prevent_initial_call=True)
    def _cancel(_n, project_id):
        return cancel_training(config, project_id)

    @app.callback(Output(pids.TR_LIVE, "figure"), Output(pids.TR_LIVE_TITLE, "children"),
                  Output(pids.TR_LIVE_KEY, "data"),
                  Input(pids.TR_POLL, "n_intervals"), Input(ids.PROJECT_STORE, "data"), Input(pids.TR_DONE, "data"),
                  State(pids.TR_LIVE_KEY, "data"))
    def _live(_n, project_id, _done, key):   # the job's end redraws at once, not at the next poll
        return live_view(config, project_id, key)

    @app.callback(
        Output(pids.TR_VERSIONS, "data"), Output(pids.TR_VERSIONS, "selected_rows"),
        Output(pids.TR_PARENT, "options"), Output(pids.TR_PARENT, "value"),
        Output(pids.TR_EFFICIENCY, "figure"), Output(pids.TR_GT_NOTE, "children"),
        Output(pids.TR_EFFORT_NOTE, "children"),
        Input(ids.PROJECT_STORE, "data"), Input(pids.TR_DONE, "data"), Input(pids.TR_ACTIVATE, "n_clicks"),
        State(pids.TR_VERSIONS, "selected_rows"), State(pids.TR_VERSIONS, "data"),
    )
    def _versions(project_id, _done, _act, selected, rows):
        return versions_view(config, project_id, ctx.triggered_id == pids.TR_ACTIVATE, selected, rows)
