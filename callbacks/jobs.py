"""Jobs list: poll the Job table (which also reconciles jobs whose process died); Cancel any active job."""
from __future__ import annotations

from typing import Any

from dash import ALL, Input, Output, State, ctx, no_update

from app import jobs
from app.config import Config
from layouts import ids
from layouts.jobs import job_rows


def jobs_view(config: Config, project_id: int | None, limit: int = 12):
    """The recent jobs; live updates only while they run or when they failed (one runs per stroke)."""
    return job_rows(jobs.list_jobs(config, project_id=project_id, limit=limit, quiet_kinds=(jobs.LIVE_KIND,)))


def cancel_from_list(config: Config, triggered_id: Any, n_clicks: Any) -> bool:
    """A click on a row's Cancel: flag that job (cooperative; it keeps its files). False for a re-render."""
    if not n_clicks or not isinstance(triggered_id, dict):
        return False
    return jobs.request_cancel(config, int(triggered_id["index"])) > 0


def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)

    @app.callback(Output(ids.JOBS_TABLE, "children"),
                  Input(ids.JOBS_POLL, "n_intervals"), Input(ids.JOBS_REFRESH, "data"),
                  Input(ids.PROJECT_STORE, "data"))
    def refresh_jobs(_n, _rev, project_id):
        return jobs_view(config, project_id)

    @app.callback(Output(ids.JOBS_REFRESH, "data", allow_duplicate=True),
                  Input({"type": ids.JOB_CANCEL_TYPE, "index": ALL}, "n_clicks"), State(ids.JOBS_REFRESH, "data"),
                  prevent_initial_call=True)
    def cancel_job(_clicks, rev):
        value = ctx.triggered[0]["value"] if ctx.triggered else None
        if not cancel_from_list(config, ctx.triggered_id, value):
            return no_update
        return (rev or 0) + 1
