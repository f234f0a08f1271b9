"""Live mode's bar in the viewer: the switch, what the draft is, Keep / Discard, and its stores."""
from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts import ids

OFF_TEXT = ("Live: off. Switch it on and the prediction follows your strokes within seconds "
            "(a draft model; keep it to make it a version).")


def build() -> Any:
    return html.Div([
        dbc.Switch(id=ids.LIVE_SWITCH, label="Live", value=False, className="d-inline-block me-2 small",
                   persistence=True, persistence_type="session"),
        html.Span(OFF_TEXT, id=ids.LIVE_STATUS, className="small text-muted me-2"),
        dbc.Button("Keep", id=ids.LIVE_KEEP, size="sm", color="success", outline=True, className="me-1",
                   disabled=True, title="make the draft an active model version"),
        dbc.Button("Discard", id=ids.LIVE_DISCARD, size="sm", color="secondary", outline=True, disabled=True,
                   title="forget the draft; the active version is shown again"),
        dcc.Store(id=ids.LIVE_PENDING, data=False),
        dcc.Store(id=ids.LIVE_BUSY, data=False),
        dcc.Store(id=ids.LIVE_GO),
        dcc.Store(id=ids.LIVE_REV),
    ], className="d-flex align-items-center flex-wrap mb-1")


def status_text(draft: dict | None, last: dict | None = None, error: str | None = None) -> str:
    """One line: the draft (updates, steps, origin) and the last update's timing, or the error."""
    if error:
        return f"Live: {error} The overlay still shows the last update."
    if not draft:
        return "Live: on. Paint a stroke (both classes labeled) and the prediction in view updates."
    text = (f"Live draft: {draft.get('updates', 0)} update{'s' if draft.get('updates', 0) != 1 else ''}, "
            f"{draft.get('steps', 0)} steps, from {draft.get('started_from') or 'scratch'}")
    if last and last.get("timings"):
        text += f"; last update {last['timings'].get('total_s', 0):.1f} s"
    return text + ". Keep makes it a version."
