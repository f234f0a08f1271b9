"""Jobs list: the recent background jobs (kind, state, progress bar, error, Cancel), polled from the Job table."""
from __future__ import annotations

from typing import Any, Sequence

import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts import ids

STATE_COLOR = {"queued": "secondary", "running": "primary", "done": "success", "failed": "danger",
               "cancelled": "warning"}
ACTIVE = ("queued", "running")    # app.jobs.ACTIVE_STATES (layouts import nothing from app)
POLL_MS = 2000


def progress_cell(job: dict) -> Any:
    """Bar with the percentage (and the job's phase, when it reports one) of a running job; text otherwise."""
    pct = 100 * job["progress"] / job["total"] if job.get("total") else None
    phase = (job.get("info") or {}).get("phase")
    note = html.Div(phase, className="text-muted text-nowrap") if phase and job["status"] in ACTIVE else None
    if job["status"] not in ACTIVE:
        return html.Td(f"{pct:.0f}%" if pct is not None else "")
    bar = dbc.Progress(value=pct or 0, label=f"{pct or 0:.0f}%", striped=True, animated=True,
                       style={"height": "1rem", "minWidth": "5rem"})
    return html.Td([bar, note])


def action_cell(job: dict) -> Any:
    """Cancel for a queued or running job (cooperative: it stops at its next check and keeps its files)."""
    if job["status"] not in ACTIVE:
        return html.Td("")
    if job.get("cancel_requested"):
        return html.Td("stopping…", className="text-muted text-nowrap")
    return html.Td(dbc.Button("Cancel", id={"type": ids.JOB_CANCEL_TYPE, "index": job["id"]}, size="sm",
                              color="secondary", outline=True, className="py-0"))


def job_rows(jobs: Sequence[dict]) -> Any:
    """The table body for a list of ``app.jobs.job_dict`` rows."""
    if not jobs:
        return html.Div("No jobs yet.", className="text-muted small")
    rows = []
    for j in jobs:
        rows.append(html.Tr([
            html.Td(j["id"]), html.Td(j["kind"]),
            html.Td(dbc.Badge(j["status"], color=STATE_COLOR.get(j["status"], "secondary"))),
            progress_cell(j), html.Td(j.get("created") or "", className="text-nowrap"),
            html.Td(j.get("error") or "", className="text-danger small"), action_cell(j),
        ], id={"type": "job-row", "index": j["id"]}))
    head = html.Thead(html.Tr([html.Th(h) for h in ("#", "kind", "state", "progress", "created", "error", "")]))
    return dbc.Table([head, html.Tbody(rows)], size="sm", hover=True, className="mb-0 small")


def build() -> Any:
    return dbc.Card([
        dbc.CardHeader("Jobs"),
        dbc.CardBody([html.Div(job_rows([]), id=ids.JOBS_TABLE),
                      dcc.Interval(id=ids.JOBS_POLL, interval=POLL_MS),
                      dcc.Store(id=ids.JOBS_REFRESH, data=0)], className="p-2"),
    ])
