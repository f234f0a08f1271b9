"""Guided path callbacks: the step bar follows what exists; a step's badge opens its panel."""
from __future__ import annotations

from typing import Any

from dash import ALL, Input, Output, State, ctx, no_update

from app.config import Config
from app.services import guide
from callbacks.active import volume_id_of
from layouts import guide as view
from layouts import ids
from layouts import ids_panels as pids

def guide_view(config: Config, project_id: Any, volume: dict | None) -> list:
    return view.steps_bar(guide.steps_done(config, project_id, volume_id_of(volume)))


def tab_for(trigger: Any, clicks: list | None) -> Any:
    """The right-hand tab of a clicked step badge (no_update for Data / Paint or a re-render)."""
    if not isinstance(trigger, dict) or not any(clicks or []):
        return no_update
    return view.TAB_OF.get(trigger.get("index"), no_update)


def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)

    @app.callback(Output(ids.GUIDE, "children"),
                  Input(ids.PROJECT_STORE, "data"), Input(ids.VOLUME_STORE, "data"), Input(ids.LABELS_REV, "data"),
                  Input(pids.TR_DONE, "data"), Input(pids.AL_ROUND, "data"), Input(pids.OBJ_SEG, "data"),
                  Input(pids.EXP_STATUS, "children"))
    def _guide(project_id, volume, *_changes):
        return guide_view(config, project_id, volume)

    @app.callback(Output(ids.RIGHT_TABS, "active_tab"), Input({"type": ids.GUIDE_STEP_TYPE, "index": ALL}, "n_clicks"),
                  State(ids.RIGHT_TABS, "active_tab"), prevent_initial_call=True)
    def _open(clicks, _tab):
        return tab_for(ctx.triggered_id, clicks)
