"""Active-learning queue callbacks: suggest (background job), list, skip, jump the viewer to a patch.

Cancel is cooperative: the Cancel button flags the Job row and the scoring loop stops at
the next batch (Dash's own ``cancel=`` would kill the worker process instead).
The shared helpers at the top are used by the other panel callback modules too.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

from dash import ALL, Input, Output, State, ctx, no_update

from app import jobs
from app.models import JobState
from app.config import Config
from app.db import session_scope
from app.errors import user_message
from app.services import active, labels
from layouts import active as view
from layouts import ids
from layouts import ids_panels as pids


# --- helpers shared by the panel callbacks ------------------------------------------------------------
#: what a panel's progress bar shows once its job has ended: empty (the status line says how it ended;
#: a bar left at "100% · evaluating" read as still working)
IDLE_PROGRESS = [0, ""]


def progress_adapter(set_progress: Callable | None, n_outputs: int = 2) -> Callable | None:
    """``(done, total, info)`` -> Dash progress outputs ``(percent, label)`` (label from the phase)."""
    if set_progress is None:
        return None

    def forward(done: int, total: int, info: dict) -> None:
        pct = int(round(100.0 * done / total)) if total else 0
        phase = info.get("phase")
        label = (f"{pct}%" + (f" · {phase}" if phase and phase != "training" else "")
                 + (f" · {eta_text(info['eta_s'])} left" if info.get("eta_s") else ""))
        values = (pct, label)[:n_outputs]
        set_progress(values if n_outputs > 1 else values[0])

    return forward


def eta_text(seconds: float) -> str:
    """A remaining time as people say it: "~40 s", "~3 min"."""
    seconds = max(0.0, float(seconds))
    return f"~{seconds:.0f} s" if seconds < 90 else f"~{seconds / 60:.0f} min"


def outcome_text(outcome: jobs.JobOutcome, done: str) -> str:
    """One status line for a finished job."""
    if outcome.status == JobState.CANCELLED:
        return "Cancelled."
    if outcome.status == JobState.FAILED:
        return f"Failed: {outcome.error}"
    return done


def volume_id_of(volume: dict | None) -> int | None:
    return int(volume["id"]) if isinstance(volume, dict) and volume.get("id") is not None else None


def pattern_click(prop: str = "n_clicks") -> Any:
    """The index of the pattern-matching component that was really clicked (None for re-renders)."""
    trig = ctx.triggered_id
    if not isinstance(trig, dict) or not ctx.triggered or not ctx.triggered[0].get("value"):
        return None
    return trig.get("index")


# --- logic (plain functions; tests call these) -------------------------------------------------------
def strategy_help(value: str | None) -> str:
    return {o["value"]: o["description"] for o in active.strategy_options()}.get(value or "", "")


def run_suggest(config: Config, volume: dict | None, strategy: str, k: Any, size: Any,
                set_progress: Callable | None = None) -> tuple:
    """-> (round id, status text, note text, note open)."""
    vid = volume_id_of(volume)
    if vid is None:
        return no_update, "Select a volume first.", "", False
    outcome = jobs.run_job(config, "suggest", volume.get("project_id"), partial(active.suggest_patches, config),
                           progress_adapter(set_progress),
                           params={"volume_id": vid, "strategy": strategy, "k": k, "patch_size": size},
                           volume_id=vid, strategy=strategy, k=k, patch_size=size)
    if not outcome.ok:
        return no_update, outcome_text(outcome, ""), "", False
    res = outcome.result
    text = (f"Round {res['round_id']}: {len(active_round_rows(config, res['round_id']))} patches "
            f"({res['strategy']}) from {res['n_candidates']} candidates.")
    return res["round_id"], text, res["note"] or "", bool(res["note"])


def active_round_rows(config: Config, round_id: int) -> list[dict]:
    with session_scope(config) as s:
        return active.round_rows(s, round_id)


def queue_view(config: Config, volume: dict | None, skip_id: Any = None) -> tuple:
    """-> (queue children, round id shown); skips ``skip_id`` first."""
    vid = volume_id_of(volume)
    if vid is None:
        return view.queue_items([], "no volume"), None
    try:
        with session_scope(config) as s:
            if skip_id is not None:
                active.skip_suggestion(s, int(skip_id))
            rid = active.latest_round_id(s, vid)
            rows = active.round_rows(s, rid) if rid is not None else []
    except Exception as e:  # noqa: BLE001 - shown to the user
        return [view.queue_items([]), user_message(e)], None
    empty = "ready" if rows or any(c["pixels"] for c in labels.counts(config, vid)) else "no labels"
    return view.queue_items(rows, empty), rid


def goto_suggestion(config: Config, suggestion_id: Any) -> Any:
    """Navigation request for the viewer (slice + box + outline) of one suggestion."""
    if suggestion_id is None:
        return no_update
    with session_scope(config) as s:
        return active.suggestion_nav(s, int(suggestion_id))


def cancel_suggest(config: Config, project_id: int | None) -> str:
    n = jobs.request_cancel(config, kind="suggest", project_id=project_id)
    return "Stopping…" if n else "Nothing to cancel."


# --- registration ----------------------------------------------------------------------------------------
def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)

    @app.callback(Output(pids.AL_STRATEGY_HELP, "children"), Input(pids.AL_STRATEGY, "value"))
    def _help(value):
        return strategy_help(value)

    @app.callback(
        Output(pids.AL_ROUND, "data"), Output(pids.AL_STATUS, "children"),
        Output(pids.AL_MODEL_NOTE, "children"), Output(pids.AL_MODEL_NOTE, "is_open"),
        Input(pids.AL_SUGGEST, "n_clicks"),
        State(ids.VOLUME_STORE, "data"), State(pids.AL_STRATEGY, "value"), State(pids.AL_BATCH, "value"),
        State(pids.AL_PATCH, "value"),
        background=True,
        progress=[Output(pids.AL_PROGRESS, "value"), Output(pids.AL_PROGRESS, "label")],
        progress_default=IDLE_PROGRESS,
        running=[(Output(pids.AL_SUGGEST, "disabled"), True, False),
                 (Output(pids.AL_CANCEL, "disabled"), False, True)],
        prevent_initial_call=True,
    )
    def _suggest(set_progress, _n, volume, strategy, k, size):
        return run_suggest(config, volume, strategy, k, size, set_progress)

    @app.callback(Output(pids.AL_STATUS, "children", allow_duplicate=True), Input(pids.AL_CANCEL, "n_clicks"),
                  State(ids.PROJECT_STORE, "data"), prevent_initial_call=True)
    def _cancel(_n, project_id):
        return cancel_suggest(config, project_id)

    @app.callback(Output(pids.AL_QUEUE, "children"),
                  Input(pids.AL_ROUND, "data"), Input(ids.VOLUME_STORE, "data"), Input(ids.LABELS_REV, "data"),
                  Input({"type": pids.AL_SKIP_TYPE, "index": ALL}, "n_clicks"))
    def _queue(_round, volume, _rev, _skips):
        return queue_view(config, volume, pattern_click())[0]

    @app.callback(Output(pids.NAV_REQUEST, "data", allow_duplicate=True),
                  Input({"type": pids.AL_GOTO_TYPE, "index": ALL}, "n_clicks"), prevent_initial_call=True)
    def _goto(_clicks):
        return goto_suggestion(config, pattern_click())
