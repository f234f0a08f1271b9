"""Page-shell callbacks: hide / show the Data column (the viewer takes its width)."""
from __future__ import annotations

from dash import Input, Output

from layouts import ids
from layouts.page import viewer_widths
from layouts.viewer import DATA_TOGGLE_TEXT


def columns_view(n_clicks: int | None) -> tuple:
    """-> (Data column class, viewer lg width, viewer xxl width, toggle text); odd clicks hide the Data column."""
    hidden = bool((n_clicks or 0) % 2)
    widths = viewer_widths(hidden)
    return "d-none" if hidden else "", widths["lg"], widths["xxl"], DATA_TOGGLE_TEXT[hidden]


#: the "preparing the demo" page reloads itself; the real page has no PREPARING_POLL, so this stops there
RELOAD_JS = "function(n) { if (n) { window.location.reload(); } return window.dash_clientside.no_update; }"


def register(app) -> None:
    app.clientside_callback(RELOAD_JS, Output(ids.PREPARING_RELOAD, "children"), Input(ids.PREPARING_POLL, "n_intervals"),
                            prevent_initial_call=True)

    @app.callback(Output(ids.COL_DATA, "className"), Output(ids.COL_VIEWER, "lg"), Output(ids.COL_VIEWER, "xxl"),
                  Output(ids.DATA_TOGGLE, "children"), Input(ids.DATA_TOGGLE, "n_clicks"), prevent_initial_call=True)
    def _toggle(n_clicks):
        return columns_view(n_clicks)
