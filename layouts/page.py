"""The page: Data panel left, viewer/canvas centre, the learning panels right, jobs below.

Widths (Bootstrap grid): from 1400 px (xxl) the three columns share 2/5/5 twelfths, so at
1600-1700 px the viewer keeps its ~620 px canvas and the right panels get ~650 px (tabs in
one row, tables without sideways scrolling); between 992 and 1400 px the Data panel and
viewer share a row and the learning panels take the full width below; narrower, all stack.
The viewer's header button hides the Data column and gives its width to the viewer.

Each panel module exposes ``build()``; what a panel lists that comes from the server (the
strategy names) is passed in, so layouts stay pure functions without service imports.
"""
from __future__ import annotations

from typing import Any, Sequence

import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts import active, data, effort, export, guide, ids, jobs, results, training, viewer


def right_panels(strategy_options: Sequence[dict]) -> list[tuple[str, str, str, Any]]:
    """``(tab id, tab label, slot id, panel)`` of the learning panels, in tab order."""
    return [
        ("active", "Active learning", ids.SLOT_ACTIVE, active.build(strategy_options)),
        ("training", "Training", ids.SLOT_TRAINING, training.build()),
        ("results", "Results", ids.SLOT_RESULTS, results.build()),
        ("export", "Export", ids.SLOT_EXPORT, export.build()),
        ("effort", "Effort", ids.SLOT_EFFORT, effort.build()),
    ]


def stores() -> list:
    return [
        dcc.Location(id=ids.URL),
        dcc.Store(id=ids.PROJECT_STORE, storage_type="local"),
        dcc.Store(id=ids.VOLUME_STORE),
        dcc.Store(id=ids.CLASSES_STORE),
        dcc.Store(id=ids.LABELS_REV, data=0),
        dcc.Store(id=ids.VIEW_STATE, storage_type="local"),   # slice, plane, position survive a reload
    ]


DATA_WIDTHS = dict(xs=12, lg=4, xxl=2)
VIEWER_WIDTHS = dict(xs=12, lg=8, xxl=5)
RIGHT_WIDTHS = dict(xs=12, lg=12, xxl=5)


def viewer_widths(data_hidden: bool) -> dict:
    """The viewer column's widths: it takes the Data column's share while that is hidden."""
    widths = dict(VIEWER_WIDTHS)
    if data_hidden:
        widths.update(lg=VIEWER_WIDTHS["lg"] + DATA_WIDTHS["lg"], xxl=VIEWER_WIDTHS["xxl"] + DATA_WIDTHS["xxl"])
    return widths


PREPARING_TEXT = ("Preparing the demo volume: generated on the first start only (about half a minute), "
                  "then kept in the workspace. This page opens by itself when it is ready.")


def preparing_layout() -> Any:
    """What a first start shows while the demo is generated; it reloads itself every 2 s."""
    return dbc.Container([
        dbc.Navbar(dbc.Container([dbc.NavbarBrand("ActiveSeg")]), color="dark", dark=True, className="mb-3"),
        dbc.Alert([dbc.Spinner(size="sm", spinner_class_name="me-2"), PREPARING_TEXT], color="info",
                  id=ids.PREPARING),
        dcc.Interval(id=ids.PREPARING_POLL, interval=2000),
        html.Div(id=ids.PREPARING_RELOAD, hidden=True),
    ], fluid=True)


def _account(user: str | None) -> Any:
    """Who is signed in, and the way out (shared mode only)."""
    if not user:
        return None
    return html.Span([f"signed in as {user} · ", html.A("Sign out", href="/logout", id=ids.SIGN_OUT,
                                                         className="link-light")],
                     className="text-light small ms-auto", id=ids.ACCOUNT)


def build_layout(strategy_options: Sequence[dict], user: str | None = None) -> Any:
    """The whole page (Dash calls it on every page load). ``strategy_options``: the AL
    strategies offered (``app.services.active.strategy_options()``); ``user``: the signed-in
    name in shared mode."""
    right = dbc.Tabs([dbc.Tab(html.Div(body, id=slot, className="pt-2"), label=label, tab_id=tab)
                      for tab, label, slot, body in right_panels(strategy_options)],
                     id=ids.RIGHT_TABS, active_tab="active")
    return dbc.Container([
        *stores(),
        dbc.Navbar(dbc.Container([dbc.NavbarBrand("ActiveSeg"),
                                  html.Span("active-learning segmentation of EM volumes",
                                            className="text-light small"), _account(user)]),
                   color="dark", dark=True, className="mb-2"),
        dbc.Alert(id=ids.ALERT, is_open=False, dismissable=True, color="danger"),
        guide.build(),
        dbc.Row([
            dbc.Col(html.Div(data.build(), id=ids.SLOT_DATA), id=ids.COL_DATA, **DATA_WIDTHS),
            dbc.Col(html.Div(viewer.build(), id=ids.SLOT_VIEWER), id=ids.COL_VIEWER, **VIEWER_WIDTHS),
            dbc.Col(right, id=ids.COL_RIGHT, **RIGHT_WIDTHS),
        ], className="g-2"),
        dbc.Row(dbc.Col(html.Div(jobs.build(), id=ids.SLOT_JOBS)), className="mt-2 mb-4"),
    ], fluid=True, id=ids.PAGE)
