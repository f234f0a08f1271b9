"""Segmentation and results panel: segment the volume, post-process, inspect objects in a table and in 3D."""
from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import dash_table, dcc, html

from layouts import ids_panels as ids
from layouts.charts import empty_figure, titled_graph
from layouts.training import TABLE_STYLE

OBJECT_COLUMNS = [
    {"name": "id", "id": "id", "type": "numeric"},
    {"name": "volume (µm³)", "id": "volume_um3", "type": "numeric", "format": {"specifier": ".3~g"}},
    {"name": "surface (µm²)", "id": "surface_um2", "type": "numeric", "format": {"specifier": ".3~g"}},
    {"name": "voxels", "id": "voxels", "type": "numeric"},
    {"name": "z", "id": "centroid_z", "type": "numeric", "format": {"specifier": ".1f"}},
    {"name": "y", "id": "centroid_y", "type": "numeric", "format": {"specifier": ".1f"}},
    {"name": "x", "id": "centroid_x", "type": "numeric", "format": {"specifier": ".1f"}},
    {"name": "edge", "id": "edge", "type": "text"},
]
DEFAULT_MESH_N = 50
#: the page's core threshold (hysteresis): measured in BENCHMARKS v40; empty in the form = every object.
CORE_THRESHOLD = 0.9
CORE_HELP = ("Core threshold: an object is kept only where the model is this sure somewhere inside it; "
             "its outline still comes from the threshold. Empty keeps every object.")
MESH_HEIGHT = 380


def min_size_units(physical: bool = True) -> list[dict]:
    """A min size's units, as ml.postprocess.SizeUnit names them (tests check they agree). µm³ carries from one
    volume to another of another voxel size; without a known voxel size it is offered greyed, with the reason."""
    um3 = {"label": "µm³", "value": "um3"} if physical else {"label": "µm³ (set the voxel size)", "value": "um3",
                                                              "disabled": True}
    return [{"label": "voxels", "value": "voxels"}, um3]


def mesh_figure(mesh: dict | None) -> go.Figure:
    """One plotly Mesh3d of all shown objects, coloured by object id (``mesh`` from object_meshes)."""
    if not mesh:
        return empty_figure("segment and post-process to see objects", MESH_HEIGHT)
    unit = mesh.get("units", "µm")
    fig = go.Figure(go.Mesh3d(x=mesh["x"], y=mesh["y"], z=mesh["z"], i=mesh["i"], j=mesh["j"], k=mesh["k"],
                              intensity=mesh["object_id"], colorscale="Turbo", showscale=False, flatshading=True,
                              hovertemplate="object %{intensity}<extra></extra>"))
    fig.update_layout(height=MESH_HEIGHT, margin=dict(l=0, r=0, t=30, b=0),
                      scene=dict(aspectmode="data", xaxis_title=f"x ({unit})", yaxis_title=f"y ({unit})",
                                 zaxis_title=f"z ({unit})"))
    return fig


def summary_view(summary: dict | None) -> Any:
    """Count, total and mean volume as a compact row of numbers."""
    if not summary:
        return html.Div("No objects yet.", className="text-muted small")
    unit = summary.get("units", "µm³")
    cut = summary.get("edge_count")
    cells = [("objects" if cut is None else f"objects, {cut} cut by the volume's edge", f"{summary.get('count', 0)}"),
             ("total volume", f"{summary.get('total_volume_um3', 0.0):.3g} {unit}"),
             ("mean volume", f"{summary.get('mean_volume_um3', 0.0):.3g} {unit}")]
    return dbc.Row([dbc.Col([html.Div(v, className="fw-bold"), html.Small(k, className="text-muted")])
                    for k, v in cells], className="text-center my-2")


def build() -> Any:
    """The panel."""
    return dbc.Card(
        [
            dbc.CardHeader("Segmentation and results"),
            dbc.CardBody(
                [
                    dbc.Checklist(id=ids.SEG_MC, options=[{"label": "MC-dropout uncertainty (slower)", "value": "mc"}],
                                  value=[], switch=True),
                    dbc.ButtonGroup([
                        dbc.Button("Segment volume", id=ids.SEG_RUN, color="primary"),
                        dbc.Button("Cancel", id=ids.SEG_CANCEL, color="secondary", outline=True, disabled=True),
                    ], className="my-2"),
                    dbc.Progress(id=ids.SEG_PROGRESS, value=0, striped=True, className="mb-1"),
                    html.Div(id=ids.SEG_STATUS, className="small mb-2"),
                    dcc.Store(id=ids.SEG_DONE),
                    html.H6("Post-processing"),
                    dbc.Label("Threshold", html_for=ids.PP_THRESHOLD),
                    dcc.Slider(id=ids.PP_THRESHOLD, min=0.05, max=0.95, step=0.05, value=0.5,
                               marks={0.1: "0.1", 0.5: "0.5", 0.9: "0.9"}),
                    dbc.Row([
                        dbc.Col([dbc.Label("Min size", html_for=ids.PP_MIN_SIZE),
                                 dbc.InputGroup([
                                     dbc.Input(id=ids.PP_MIN_SIZE, type="number", min=0, step="any", value=50),
                                     dbc.Select(id=ids.PP_MIN_UNIT, options=min_size_units(), value="voxels",
                                                style={"maxWidth": "6.5em"}),
                                 ])]),
                        dbc.Col([dbc.Label("Core threshold", html_for=ids.PP_CORE),
                                 dbc.Input(id=ids.PP_CORE, type="number", min=0.5, max=0.99, step=0.05,
                                           value=CORE_THRESHOLD, placeholder="off")]),
                        dbc.Col(dbc.Checklist(id=ids.PP_SPLIT, options=[{"label": "Split touching", "value": "split"}],
                                              value=[], switch=True), className="pt-4"),
                    ]),
                    html.Small(CORE_HELP, className="text-muted d-block"),
                    dbc.Button("Apply", id=ids.PP_APPLY, className="my-2"),
                    html.Div(id=ids.PP_STATUS, className="small"),
                    dcc.Store(id=ids.OBJ_SEG),
                    dcc.Store(id=ids.OBJ_SHOWN),
                    html.Div(summary_view(None), id=ids.OBJ_SUMMARY),
                    dash_table.DataTable(id=ids.OBJ_TABLE, columns=OBJECT_COLUMNS, data=[], sort_action="native",
                                         page_size=10, **TABLE_STYLE),
                    dbc.Row([
                        dbc.Col(dbc.Label("3D: largest N objects", html_for=ids.OBJ_MESH_N), width="auto"),
                        dbc.Col(dbc.Input(id=ids.OBJ_MESH_N, type="number", min=1, max=500, step=1,
                                          value=DEFAULT_MESH_N, size="sm"), width=3),
                    ], className="mt-2 align-items-center"),
                    titled_graph("3D objects", ids.OBJ_MESH, mesh_figure([])),
                ]
            ),
        ],
        className="mb-3",
    )
