"""Small plotly charts of the side panels: a shared blank figure and a titled graph block.

Titles sit in a heading above the graph, not inside the figure: plotly's mode bar floats
over the figure's top margin and covered in-figure titles in the narrow side panels.
"""
from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import dcc, html

CHART_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}
CHART_MARGIN = dict(l=45, r=45, t=30, b=30)   # t: room for the mode bar above the plot area
CHART_HEIGHT = 260


def empty_figure(message: str = "", height: int = CHART_HEIGHT) -> go.Figure:
    """A blank chart (shown before any data exists), with ``message`` in its middle."""
    fig = go.Figure()
    fig.update_layout(height=height, margin=CHART_MARGIN, template="plotly_white")
    if message:   # nothing to plot yet: the message alone, no empty axes
        fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return fig


def titled_graph(title: str, graph_id: str, figure: go.Figure, title_id: str | None = None) -> Any:
    """A heading (``title_id`` when a callback retitles it) above a ``dcc.Graph``."""
    heading = html.Div(title, className="small fw-semibold mt-2", **({"id": title_id} if title_id else {}))
    return html.Div([heading, dcc.Graph(id=graph_id, figure=figure, config=CHART_CONFIG)])
