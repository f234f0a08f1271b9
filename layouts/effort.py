"""Effort panel: time and strokes spent per AL round and per patch, beside the label-efficiency chart."""
from __future__ import annotations

from typing import Any, Sequence

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import dash_table, html

from layouts import ids_panels as ids
from layouts.charts import empty_figure, titled_graph
from layouts.training import TABLE_STYLE

ROUND_COLUMNS = [
    {"name": "round", "id": "round_id"}, {"name": "strategy", "id": "strategy"},
    {"name": "patches", "id": "n_patches"}, {"name": "labeled", "id": "n_labeled"},
    {"name": "skipped", "id": "n_skipped"}, {"name": "strokes", "id": "n_strokes"},
    {"name": "time (s)", "id": "seconds", "type": "numeric", "format": {"specifier": ".0f"}},
    {"name": "s / patch", "id": "seconds_per_patch", "type": "numeric", "format": {"specifier": ".0f"}},
]
PATCH_COLUMNS = [
    {"name": "round", "id": "round_id"}, {"name": "rank", "id": "rank"}, {"name": "z", "id": "z"},
    {"name": "y", "id": "y"}, {"name": "x", "id": "x"}, {"name": "status", "id": "status"},
    {"name": "strokes", "id": "n_strokes"},
    {"name": "time (s)", "id": "seconds", "type": "numeric", "format": {"specifier": ".0f"}},
]


def effort_figure(rounds: Sequence[dict]) -> go.Figure:
    """Labeling time (bars) and strokes (line) per AL round."""
    if not rounds:
        return empty_figure("no AL rounds yet")
    fig = empty_figure()
    xs = [str(r["round_id"]) for r in rounds]
    fig.add_trace(go.Bar(x=xs, y=[r["seconds"] for r in rounds], name="time (s)"))
    fig.add_trace(go.Scatter(x=xs, y=[r["n_strokes"] for r in rounds], name="strokes", yaxis="y2",
                             mode="lines+markers"))
    fig.update_layout(xaxis_title="round", yaxis_title="seconds",
                      yaxis2=dict(title="strokes", overlaying="y", side="right", tickmode="auto", showgrid=False,
                                  rangemode="tozero"),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def build() -> Any:
    """The panel."""
    return dbc.Card(
        [
            dbc.CardHeader("Labeling effort"),
            dbc.CardBody(
                [
                    dbc.Button("Refresh", id=ids.EFF_REFRESH, size="sm", className="mb-2"),
                    titled_graph("Effort per round", ids.EFF_GRAPH, effort_figure([])),
                    html.H6("Per round"),
                    dash_table.DataTable(id=ids.EFF_ROUNDS, columns=ROUND_COLUMNS, data=[], sort_action="native",
                                         page_size=8, **TABLE_STYLE),
                    html.H6("Per patch", className="mt-2"),
                    dash_table.DataTable(id=ids.EFF_PATCHES, columns=PATCH_COLUMNS, data=[], sort_action="native",
                                         page_size=10, **TABLE_STYLE),
                ]
            ),
        ],
        className="mb-3",
    )
