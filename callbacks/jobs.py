"""Jobs list: poll the Job table (which also reconciles jobs whose process died)."""
from __future__ import annotations

from dash import Input, Output

from app import jobs
from app.config import get_config
from layouts import ids
from layouts.jobs import job_rows


def jobs_view(project_id: int | None, limit: int = 12):
    return job_rows(jobs.list_jobs(get_config(), project_id=project_id, limit=limit))


def register(app) -> None:
    @app.callback(Output(ids.JOBS_TABLE, "children"),
                  Input(ids.JOBS_POLL, "n_intervals"), Input(ids.JOBS_REFRESH, "data"),
                  Input(ids.PROJECT_STORE, "data"))
    def refresh_jobs(_n, _rev, project_id):
        return jobs_view(project_id)
