"""Jobs list: the recent background jobs (kind, state, progress, error), polled from the Job table."""
from __future__ import annotations

from typing import Any, Sequence

import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts import ids

STATE_COLOR = {"queued": "secondary", "running": "primary", "done": "success", "failed": "danger",
               "cancelled": "warning"}
POLL_MS = 2000


def job_rows(jobs: Sequence[dict]) -> Any:
    """The table body for a list of ``app.jobs.job_dict`` rows."""
    if not jobs:
        return html.Div("No jobs yet.", className="text-muted small")
    rows = []
    for j in jobs:
        pct = f"{100 * j['progress'] / j['total']:.0f}%" if j.get("total") else ""
        rows.append(html.Tr([
            html.Td(j["id"]), html.Td(j["kind"]),
            html.Td(dbc.Badge(j["status"], color=STATE_COLOR.get(j["status"], "secondary"))),
            html.Td(pct), html.Td(j.get("created") or "", className="text-nowrap"),
            html.Td(j.get("error") or "", className="text-danger small"),
        ], id={"type": "job-row", "index": j["id"]}))
    head = html.Thead(html.Tr([html.Th(h) for h in ("#", "kind", "state", "progress", "created", "error")]))
    return dbc.Table([head, html.Tbody(rows)], size="sm", hover=True, className="mb-0 small")


def build() -> Any:
    return dbc.Card([
        dbc.CardHeader("Jobs"),
        dbc.CardBody([html.Div(job_rows([]), id=ids.JOBS_TABLE),
                      dcc.Interval(id=ids.JOBS_POLL, interval=POLL_MS),
                      dcc.Store(id=ids.JOBS_REFRESH, data=0)], className="p-2"),
    ])
