"""Training panel: train or fine-tune, watch loss / validation IoU live, manage model versions."""
from __future__ import annotations

from typing import Any, Sequence

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import dash_table, dcc, html

from layouts import ids_panels as ids
from layouts.charts import empty_figure, titled_graph

TABLE_STYLE = dict(style_table={"overflowX": "auto"}, style_cell={"fontSize": 12, "padding": "2px 6px"},
                   style_header={"whiteSpace": "normal", "height": "auto"})

VERSION_COLUMNS = [
    {"name": "id", "id": "id"},
    {"name": "active", "id": "active_mark"},
    {"name": "created", "id": "created_short"},
    {"name": "parent", "id": "parent_id"},
    {"name": "started from", "id": "started_from"},
    {"name": "labeled px", "id": "n_labeled_pixels"},
    {"name": "128-px tiles with labels", "id": "n_labeled_patches"},
    {"name": "est. IoU", "id": "est_iou_text"},
    {"name": "GT IoU", "id": "gt_iou_text"},
    {"name": "steps", "id": "steps"},
    {"name": "status", "id": "note"},
]
LIVE_TITLE = "Training curves"
HELDOUT_TRACE = "IoU on held-out labels (tracks training, flatters the model)"
#: a new version's estimate is read before its self-training (BENCHMARKS, quality v5): a near-floor.
ESTIMATE_TRACE = "estimated IoU (low end of its range)"
IOU_AXIS = dict(title="IoU", range=[0, 1], tickmode="linear", tick0=0, dtick=0.2, showgrid=False)


def iou_text(value: float | None) -> str:
    """An IoU for tables and labels; "n/a" when it could not be measured."""
    return "n/a" if value is None else f"{value:.3f}"


def estimate_text(low: float | None, high: float | None) -> str:
    """The quality estimate for the table: its range ("0.312-0.480"), one number, or "n/a"."""
    if low is None or high is None or high - low < 0.0005:
        return iou_text(low)
    return f"{low:.3f}-{high:.3f}"


def version_row(version: dict) -> dict:
    """A version dict (``app.services.training.list_versions``) with the table's display fields."""
    return {**version, "created_short": version["created"][5:16].replace("T", " "),
            "est_iou_text": estimate_text(version.get("est_iou"), version.get("est_iou_high")),
            "gt_iou_text": iou_text(version["gt_iou"])}


def live_figure(history: Sequence[dict]) -> go.Figure:
    """Training loss (left axis) and IoU on the held-out labels (right axis, 0..1) against step.

    The held-out IoU tracks training; it is not the model's quality (labels sit on easy pixels):
    that is the estimate in the version table."""
    if not history:
        return empty_figure("no training run yet")
    steps = [h.get("step") for h in history if h.get("loss") is not None]
    loss = [h["loss"] for h in history if h.get("loss") is not None]
    val = [(h.get("step"), h["val_iou"]) for h in history if h.get("val_iou") is not None]
    fig = empty_figure()
    fig.add_trace(go.Scatter(x=steps, y=loss, name="loss", mode="lines"))
    if val:
        fig.add_trace(go.Scatter(x=[v[0] for v in val], y=[v[1] for v in val], name=HELDOUT_TRACE,
                                 mode="lines+markers", yaxis="y2"))
    fig.update_layout(xaxis_title="step", yaxis=dict(title="loss"), yaxis2=dict(IOU_AXIS, overlaying="y", side="right"),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def efficiency_figure(points: Sequence[dict], x_key: str = "n_labeled_patches") -> go.Figure:
    """Estimated (and ground-truth) IoU per model version against labeling effort (gaps: not estimated)."""
    if not points:
        return empty_figure("train a model to see IoU against labeled data")
    fig = empty_figure()
    xs = [p[x_key] for p in points]
    fig.add_trace(go.Scatter(x=xs, y=[p.get("est_iou") for p in points], name=ESTIMATE_TRACE, mode="lines+markers",
                             text=[f"model {p['id']}: {p['n_labeled_pixels']:,} labeled px" for p in points]))
    if any(p.get("gt_iou") is not None for p in points):
        fig.add_trace(go.Scatter(x=xs, y=[p.get("gt_iou") for p in points], name="IoU vs ground truth",
                                 mode="lines+markers"))
    label = "128-px tiles holding labels" if x_key == "n_labeled_patches" else "labeled pixels"
    fig.update_layout(xaxis_title=label, yaxis=dict(IOU_AXIS, showgrid=True), legend=dict(orientation="h", y=-0.25))
    return fig


def build() -> Any:
    """The panel."""
    return dbc.Card(
        [
            dbc.CardHeader("Training"),
            dbc.CardBody(
                [
                    dbc.RadioItems(id=ids.TR_MODE, inline=True, value="new",
                                   options=[{"label": "New model", "value": "new"},
                                            {"label": "Continue from version", "value": "continue"}]),
                    dcc.Dropdown(id=ids.TR_PARENT, options=[], placeholder="model version", className="mb-2"),
                    dbc.RadioItems(id=ids.TR_BUDGET, value="quick", options=[], className="small"),
                    html.Small(id=ids.TR_ESTIMATE, className="text-muted d-block mb-1"),
                    dbc.Row(
                        [
                            dbc.Col([dbc.Label("Epochs (when “by epochs”)", html_for=ids.TR_EPOCHS),
                                     dbc.Input(id=ids.TR_EPOCHS, type="number", min=1, max=500, step=1, value=10)]),
                            dbc.Col([dbc.Label("Learning rate", html_for=ids.TR_LR),
                                     dbc.Input(id=ids.TR_LR, type="number", min=1e-6, max=1.0, value=None,
                                               placeholder="default", step="any")]),
                        ],
                        className="mb-2",
                    ),
                    dbc.ButtonGroup([
                        dbc.Button("Train", id=ids.TR_TRAIN, color="primary"),
                        dbc.Button("Cancel", id=ids.TR_CANCEL, color="secondary", outline=True, disabled=True),
                    ], className="mb-2"),
                    html.Small("Cancel stops at the next step and keeps the best model so far as a new version.",
                               className="text-muted d-block"),
                    dbc.Progress(id=ids.TR_PROGRESS, value=0, striped=True, className="my-1"),
                    html.Div(id=ids.TR_STATUS, className="small"),
                    # heading filled on page load by the live callback (job N: status, or LIVE_TITLE)
                    titled_graph("", ids.TR_LIVE, live_figure([]), title_id=ids.TR_LIVE_TITLE),
                    dcc.Interval(id=ids.TR_POLL, interval=1500),
                    dcc.Store(id=ids.TR_DONE),
                    dcc.Store(id=ids.TR_LIVE_KEY),
                    html.H6("Model versions", className="mt-2"),
                    dash_table.DataTable(id=ids.TR_VERSIONS, columns=VERSION_COLUMNS, data=[],
                                         row_selectable="single", sort_action="native", page_size=8,
                                         **TABLE_STYLE),
                    dbc.Button("Activate selected", id=ids.TR_ACTIVATE, size="sm", className="mt-1"),
                    titled_graph("Label efficiency", ids.TR_EFFICIENCY, efficiency_figure([])),
                    html.Small(id=ids.TR_GT_NOTE, className="text-muted d-block"),
                    html.Small(id=ids.TR_EFFORT_NOTE, className="text-muted d-block"),
                ]
            ),
        ],
        className="mb-3",
    )
