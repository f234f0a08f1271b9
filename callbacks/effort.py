"""Effort panel callbacks: per-round and per-patch labeling time and strokes."""
from __future__ import annotations

from dash import Input, Output

from app.config import Config
from app.services import effort
from layouts import effort as view
from layouts import ids
from layouts import ids_panels as pids


def effort_view(config: Config, project_id: int | None) -> tuple:
    """-> (round rows, patch rows, figure)."""
    patches = effort.patch_effort(config, project_id)
    rounds = effort.round_effort(config, project_id, patches)
    return rounds, patches, view.effort_figure(rounds)


def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)

    @app.callback(Output(pids.EFF_ROUNDS, "data"), Output(pids.EFF_PATCHES, "data"), Output(pids.EFF_GRAPH, "figure"),
                  Input(pids.EFF_REFRESH, "n_clicks"), Input(ids.PROJECT_STORE, "data"), Input(pids.AL_ROUND, "data"),
                  Input(pids.TR_DONE, "data"))
    def _effort(_n, project_id, _round, _done):
        return effort_view(config, project_id)
