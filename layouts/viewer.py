"""Viewer + painting canvas: a plotly figure whose images are PNG URLs, controls around it.

Coordinates: pixel (row r, column c) of the shown plane has its centre at figure point
(x=c, y=r) and covers [c-0.5, c+0.5) x [r-0.5, r+0.5); the images are placed at
x0 = y0 = -0.5. Hover coordinates therefore read as pixel indices, and a stroke point
(x, y) paints pixel (round(y), round(x)) (see app.services.labels).
"""
from __future__ import annotations

from typing import Any, Sequence

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import dcc, html

from layouts import charts, ids, live

IMAGE_ORIGIN = -0.5
OVERLAYS = ("labels", "prediction", "uncertainty", "gt", "objects")   # layout.images[1..] in this order
OVERLAY_IDS = {"labels": ids.OVERLAY_LABELS, "prediction": ids.OVERLAY_PREDICTION,
               "uncertainty": ids.OVERLAY_UNCERTAINTY, "gt": ids.OVERLAY_GT,
               "objects": ids.OVERLAY_OBJECTS}
OVERLAY_DEFAULT = {"labels": 0.5, "prediction": 0.0, "uncertainty": 0.0, "gt": 0.0, "objects": 0.8}
KEEP = {"persistence": True, "persistence_type": "local"}   # a user's setting survives a reload
DRAGMODES = {"stroke": "drawopenpath", "fill": "drawclosedpath", "pan": "pan", "zoom": "zoom"}
DATA_TOGGLE_TEXT = {False: "\u25C0 hide data panel", True: "show data panel \u25B6"}   # by "hidden"
GRAPH_CONFIG = {"scrollZoom": True, "displaylogo": False, "doubleClick": "reset",
                "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
                "modeBarButtonsToAdd": ["drawopenpath", "drawclosedpath"]}


def image(url: str | None, w: int, h: int, opacity: float = 1.0, name: str = "", slot: int = 0) -> dict:
    """A layout image over the plane. plotly.js keys layout images by (x, y, size): images with
    identical geometry collapse into one, so each slot is shifted by an invisible 1e-6 px."""
    return {"source": url or "", "xref": "x", "yref": "y", "x": IMAGE_ORIGIN + slot * 1e-6, "y": IMAGE_ORIGIN,
            "sizex": w, "sizey": h, "xanchor": "left", "yanchor": "top", "sizing": "stretch",
            "layer": "below", "opacity": float(opacity), "visible": bool(url) and opacity > 0, "name": name}


def make_figure(w: int, h: int, tile_url: str | None = None, overlays: dict[str, tuple[str, float]] | None = None,
                dragmode: str = "drawopenpath", color: str = "#ff7f0e", brush: float = 6.0,
                uirevision: Any = None, aspect: float = 1.0, outline: dict | None = None) -> dict:
    """The canvas for a (h, w) plane; ``overlays[kind] = (url, opacity)``; aspect = row/column pixel size."""
    overlays = overlays or {}
    images = [image(tile_url, w, h, 1.0, "raw")]
    for slot, kind in enumerate(OVERLAYS, start=1):
        url, opacity = overlays.get(kind, (None, 0.0))
        images.append(image(url, w, h, opacity, kind, slot))
    x0, x1, y0, y1 = IMAGE_ORIGIN, w + IMAGE_ORIGIN, IMAGE_ORIGIN, h + IMAGE_ORIGIN
    layout = {
        "images": images,
        "xaxis": {"range": [x0, x1], "showgrid": False, "zeroline": False, "constrain": "domain",
                  "showticklabels": True, "ticks": "", "tickfont": {"size": 9}},
        "yaxis": {"range": [y1, y0], "showgrid": False, "zeroline": False, "scaleanchor": "x",
                  "scaleratio": float(aspect), "constrain": "domain", "tickfont": {"size": 9}},
        "margin": {"l": 30, "r": 5, "t": 5, "b": 20},
        "dragmode": dragmode,
        "newshape": {"line": {"color": color, "width": max(1.0, float(brush))}, "fillcolor": color,
                     "opacity": 0.6, "layer": "above"},
        "shapes": [outline_shape(outline)] if outline else [],
        "uirevision": uirevision,
        "plot_bgcolor": "#222", "paper_bgcolor": "white", "height": 640,
        "hovermode": "closest",
    }
    if tile_url is None:
        # No slice yet (the page's first draw): no fixed range. Plotly keeps the first fixed range it draws
        # as the view "reset axes" and a double-click return to: checked in Chromium, a fixed 1 x 1 here
        # made every later reset show [-0.5, 0.5] (CI's hover failures); with autorange nothing is kept and
        # a reset autoranges over the corner trace below, i.e. the whole plane in view.
        del layout["xaxis"]["range"], layout["yaxis"]["range"]
        layout["xaxis"]["autorange"] = layout["yaxis"]["autorange"] = True     # ("reversed" would be saved)
    trace = {"type": "scatter", "x": [x0, x1], "y": [y0, y1], "mode": "markers",
             "marker": {"opacity": 0}, "hoverinfo": "none", "showlegend": False}
    return {"data": [trace], "layout": layout}


def outline_shape(box: dict) -> dict:
    """A non-editable rectangle (e.g. the suggested patch) around pixels [y0, y1) x [x0, x1)."""
    return {"type": "rect", "x0": box["x0"] + IMAGE_ORIGIN, "x1": box["x1"] + IMAGE_ORIGIN,
            "y0": box["y0"] + IMAGE_ORIGIN, "y1": box["y1"] + IMAGE_ORIGIN, "editable": False,
            "line": {"color": "#ffd400", "width": 2, "dash": "dot"}, "name": "outline"}


STRIP_HEIGHT = 60
STRIP_MARGIN = {"l": 30, "r": 5, "t": 4, "b": 16}
STRIP_CONFIG = {"displayModeBar": False}
STRIP_HINT = "segment the volume to see where the model is unsure"
STRIP_PLANE_HINT = "uncertainty per slice is shown in the xy plane"


def strip_marker(index: int) -> dict:
    """The outline of the current slice's column in the uncertainty strip."""
    return {"type": "rect", "xref": "x", "yref": "paper", "x0": int(index) - 0.5, "x1": int(index) + 0.5,
            "y0": 0, "y1": 1, "line": {"color": "#00d0ff", "width": 2}, "fillcolor": "rgba(0,0,0,0)",
            "name": "current slice"}


def uncertainty_strip(values: Sequence[float] | None, current: int | None = None, hint: str = STRIP_HINT) -> go.Figure:
    """Mean uncertainty per slice as bars at x = slice index (magma, as the overlay; brightest =
    least sure), the current slice outlined; without values a blank strip with ``hint``."""
    if values is None or len(values) == 0:
        fig = charts.empty_figure(hint, STRIP_HEIGHT)
        fig.update_layout(margin=STRIP_MARGIN, font={"size": 10})
        return fig
    top = max(max(values), 1e-6)
    fig = go.Figure(go.Bar(x=list(range(len(values))), y=list(values), hovertemplate="z %{x}: %{y:.3f}<extra></extra>",
                           marker={"color": list(values), "colorscale": "Magma", "cmin": 0, "cmax": top}))
    fig.update_layout(height=STRIP_HEIGHT, margin=STRIP_MARGIN, bargap=0.1, hovermode="x", showlegend=False,
                      plot_bgcolor="#222", paper_bgcolor="white",
                      shapes=[strip_marker(current)] if current is not None else [])
    fig.update_xaxes(range=[-0.5, len(values) - 0.5], fixedrange=True, showgrid=False, zeroline=False,
                     tickfont={"size": 8})
    fig.update_yaxes(range=[0, top * 1.05], fixedrange=True, visible=False)
    return fig


def strip_caption(model_id: Any) -> str:
    return f"mean uncertainty per slice, from the prediction of model v{model_id}; click a bar to go there"


def _uncertainty_row() -> Any:
    """The strip under the slice slider, its "worst slice" button and caption."""
    return html.Div([
        dbc.Row([
            dbc.Col(dcc.Graph(id=ids.UNCERTAINTY_STRIP, figure=uncertainty_strip(None), config=STRIP_CONFIG,
                              style={"height": f"{STRIP_HEIGHT}px"})),
            dbc.Col(dbc.Button("worst slice", id=ids.UNCERTAINTY_WORST, size="sm", color="light", disabled=True,
                               title="go to the slice where the model is least sure"), width="auto"),
        ], className="g-1 align-items-center"),
        html.Div(id=ids.UNCERTAINTY_CAPTION, className="text-muted small"),
        dcc.Store(id=ids.UNCERTAINTY_STORE),
    ], className="mb-1")


def class_buttons(classes: Sequence[dict], value: int | None) -> list:
    """One button per class (label value i+1) in the class colour; the chosen one is solid."""
    out = []
    for i, c in enumerate(classes):
        active = value == i + 1
        out.append(dbc.Button(c["name"], id={"type": ids.CLASS_BUTTON_TYPE, "index": i + 1}, size="sm",
                              className="me-1 mb-1",
                              style={"backgroundColor": c["color"] if active else "white", "borderColor": c["color"],
                                     "color": "white" if active else c["color"], "borderWidth": "2px"}))
    return out


def counts_table(rows: Sequence[dict]) -> Any:
    if not rows:
        return html.Span("no labels yet", className="text-muted small")
    return html.Div([html.Span("Labeled in this volume (all slices): ", className="me-1 small text-muted")]
                    + [html.Span([html.Span("\u25A0 ", style={"color": r["color"]}), f"{r['name']}: {r['pixels']:,} px"],
                                 className="me-3 small") for r in rows])


def _overlay_slider(kind: str) -> Any:
    return dbc.Col([html.Small(kind), dcc.Slider(id=OVERLAY_IDS[kind], min=0, max=1, step=0.05,
                                                  value=OVERLAY_DEFAULT[kind], marks=None,
                                                  tooltip={"placement": "bottom"}, **KEEP)], xs=6, md=3)


def build() -> Any:
    paint_bar = html.Div([
        html.Div(id=ids.CLASS_BUTTONS, className="d-inline"),
        dbc.Button("Eraser", id=ids.ERASER, size="sm", color="dark", outline=True, className="me-2 mb-1"),
        dbc.RadioItems(id=ids.PAINT_MODE, inline=True, value="stroke", className="d-inline-block small me-2",
                       options=[{"label": "brush", "value": "stroke"}, {"label": "fill outline", "value": "fill"},
                                {"label": "pan/zoom", "value": "pan"}]),
        html.Span("width", className="small me-1"),
        html.Div(dcc.Slider(id=ids.BRUSH, min=1, max=40, step=1, value=6, marks=None,
                            tooltip={"placement": "bottom"}, **KEEP), style={"width": "140px", "display": "inline-block",
                                                                     "verticalAlign": "middle"}),
        dbc.Button("Undo", id=ids.UNDO, size="sm", color="secondary", className="ms-2 mb-1", title="Ctrl+Z"),
        dbc.Button("Redo", id=ids.REDO, size="sm", color="secondary", outline=True, className="ms-1 mb-1",
                   title="Ctrl+Shift+Z or Ctrl+Y"),
        dcc.Store(id=ids.PAINT_VALUE, data=2, storage_type="local"),   # the class in hand survives a reload
        dcc.Store(id=ids.PREFETCH),
    ], className="mb-1")
    return dbc.Card([
        dbc.CardHeader(html.Div([
            html.Span("Viewer and labels"),
            dbc.Button(DATA_TOGGLE_TEXT[False], id=ids.DATA_TOGGLE, size="sm", color="link", className="p-0"),
        ], className="d-flex justify-content-between align-items-center")),
        dbc.CardBody([
            paint_bar,
            live.build(),
            dcc.Graph(id=ids.GRAPH, figure=make_figure(1, 1), config=GRAPH_CONFIG, clear_on_unhover=True),
            dbc.Row([
                dbc.Col(dbc.RadioItems(id=ids.PLANE, inline=True, value="xy", className="small",
                                       options=[{"label": p, "value": p} for p in ("xy", "xz", "yz")]), width="auto"),
                dbc.Col(dbc.Button("\u25C0", id=ids.SLICE_PREV, size="sm", color="light", title="previous (left / j)"),
                        width="auto"),
                dbc.Col(dcc.Slider(id=ids.SLICE, min=0, max=0, step=1, value=0, marks=None, updatemode="drag",
                                   tooltip={"placement": "bottom"})),
                dbc.Col(dbc.Button("\u25B6", id=ids.SLICE_NEXT, size="sm", color="light", title="next (right / k)"),
                        width="auto"),
                dbc.Col(html.Span(id=ids.SLICE_LABEL, className="small"), width="auto"),
                dbc.Col(html.Span(id=ids.OBJECT_UNDER_CURSOR, className="small fw-bold"), width="auto"),
            ], className="g-1 align-items-center"),
            _uncertainty_row(),
            dbc.Row([
                dbc.Col(html.Small("contrast"), width="auto"),
                dbc.Col(dcc.RangeSlider(id=ids.CONTRAST, min=0, max=255, value=[0, 255], marks=None,
                                        allowCross=False, tooltip={"placement": "bottom"})),
                dbc.Col(dbc.Button("auto", id=ids.CONTRAST_RESET, size="sm", color="light"), width="auto"),
            ], className="g-1 align-items-center"),
            dbc.Row([_overlay_slider(k) for k in OVERLAYS], className="g-2"),
            html.Div(id=ids.COUNTS, className="mt-1"),
            html.Div(id=ids.VIEWER_NOTE, className="text-muted small"),
            dbc.Alert(id=ids.PAINT_ALERT, is_open=False, dismissable=True, color="danger", className="small py-1"),
            dbc.Alert(id=ids.VIEWER_ALERT, is_open=False, dismissable=True, color="danger", className="small py-1"),
        ], className="p-2"),
    ])
