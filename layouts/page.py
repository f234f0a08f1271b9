"""The page: Data panel left, viewer/canvas centre, the learning panels right, jobs below.

Each panel module exposes ``build()``; a panel whose module is not there yet (parallel
development) is replaced by a placeholder so the page always renders.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts import ids

log = logging.getLogger(__name__)

RIGHT_PANELS = (  # (module, tab label, slot id)
    ("active", "Active learning", ids.SLOT_ACTIVE),
    ("training", "Training", ids.SLOT_TRAINING),
    ("results", "Results", ids.SLOT_RESULTS),
    ("export", "Export", ids.SLOT_EXPORT),
    ("effort", "Effort", ids.SLOT_EFFORT),
)


def panel(module: str) -> Any:
    """``layouts.<module>.build()``, or a placeholder when that module does not exist yet."""
    try:
        mod = importlib.import_module(f"layouts.{module}")
    except ModuleNotFoundError as e:
        if e.name != f"layouts.{module}":
            raise
        return dbc.Alert(f"The {module} panel is not available in this build.", color="light")
    return mod.build()


def stores() -> list:
    return [
        dcc.Location(id=ids.URL),
        dcc.Store(id=ids.PROJECT_STORE, storage_type="local"),
        dcc.Store(id=ids.VOLUME_STORE),
        dcc.Store(id=ids.CLASSES_STORE),
        dcc.Store(id=ids.LABELS_REV, data=0),
        dcc.Store(id=ids.VIEW_STATE),
    ]


def build_layout() -> Any:
    """The whole page (Dash calls it on every page load)."""
    right = dbc.Tabs([dbc.Tab(html.Div(panel(m), id=slot, className="pt-2"), label=label, tab_id=m)
                      for m, label, slot in RIGHT_PANELS], id="right-tabs", active_tab="active")
    return dbc.Container([
        *stores(),
        dbc.Navbar(dbc.Container([dbc.NavbarBrand("ActiveSeg"),
                                  html.Span("active-learning segmentation of EM volumes",
                                            className="text-light small")]),
                   color="dark", dark=True, className="mb-2"),
        dbc.Alert(id=ids.ALERT, is_open=False, dismissable=True, color="danger"),
        dbc.Row([
            dbc.Col(html.Div(panel("data"), id=ids.SLOT_DATA), lg=3),
            dbc.Col(html.Div(panel("viewer"), id=ids.SLOT_VIEWER), lg=6),
            dbc.Col(right, lg=3),
        ], className="g-2"),
        dbc.Row(dbc.Col(html.Div(panel("jobs"), id=ids.SLOT_JOBS)), className="mt-2 mb-4"),
    ], fluid=True, id=ids.PAGE)
