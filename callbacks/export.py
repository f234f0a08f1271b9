"""Export panel callbacks: format choices, the export job, then the download.

Files up to ``INLINE_LIMIT_MB`` go through ``dcc.Download`` (Dash sends them base64 in the
response); larger ones are only offered as a link to the ``/exports/<name>`` route (streamed
by Flask), so a browser never has to hold gigabytes of JSON. Every export shows the link.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from dash import Input, Output, State, dcc, no_update

from app import jobs
from app.config import Config
from app.services import exports
from callbacks.active import IDLE_PROGRESS, outcome_text, progress_adapter, volume_id_of
from layouts import export as view
from layouts import ids
from layouts import ids_panels as pids
from layouts.format import file_size

INLINE_LIMIT_MB = 256


# --- logic (plain functions; tests call these) -------------------------------------------------------
def format_choice(what: str | None, current: str | None) -> tuple[list[dict], str | None]:
    """-> (format options for ``what``, value: the current one if still offered, else the first)."""
    options = view.format_options(what)
    values = [o["value"] for o in options]
    return options, current if current in values else (values[0] if values else None)


def export_href(filename: str, prefix: str = "") -> str:
    """URL of a finished export on the ``/exports/<name>`` route (``prefix``: the app's path prefix)."""
    return f"{prefix.rstrip('/')}/exports/{quote(filename)}"


def run_export(config: Config, volume: dict | None, what: str, fmt: str,
               set_progress: Callable | None = None, prefix: str = "") -> tuple[Any, str, Any]:
    """-> (dcc.Download data or no_update, status text, download link or None)."""
    vid = volume_id_of(volume)
    if vid is None:
        return no_update, "Select a volume first.", None
    outcome = jobs.run_job(config, "export", volume.get("project_id"), partial(exports.export, config),
                           progress_adapter(set_progress), params={"volume_id": vid, "what": what, "format": fmt},
                           compute=False, volume_id=vid, what=what, fmt=fmt)
    if not outcome.ok:
        return no_update, outcome_text(outcome, ""), None
    path = Path(outcome.result["path"])
    n_bytes = path.stat().st_size
    link = view.export_link(export_href(path.name, prefix), path.name, n_bytes)
    if n_bytes > INLINE_LIMIT_MB * 2**20:
        return no_update, (f"Exported {path.name} ({file_size(n_bytes)}): too large to send through the page, "
                           "use the link below."), link
    return dcc.send_file(str(path), filename=path.name), f"Exported {path.name} ({file_size(n_bytes)}).", link


# --- registration ----------------------------------------------------------------------------------------
def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)
    prefix = app.config.requests_pathname_prefix or "/"

    @app.callback(Output(pids.EXP_FORMAT, "options"), Output(pids.EXP_FORMAT, "value"),
                  Input(pids.EXP_WHAT, "value"), State(pids.EXP_FORMAT, "value"))
    def _formats(what, current):
        return format_choice(what, current)

    @app.callback(
        Output(pids.EXP_DOWNLOAD, "data"), Output(pids.EXP_STATUS, "children"), Output(pids.EXP_LINK, "children"),
        Input(pids.EXP_RUN, "n_clicks"),
        State(ids.VOLUME_STORE, "data"), State(pids.EXP_WHAT, "value"), State(pids.EXP_FORMAT, "value"),
        background=True,
        progress=[Output(pids.EXP_PROGRESS, "value"), Output(pids.EXP_PROGRESS, "label")],
        progress_default=IDLE_PROGRESS,
        running=[(Output(pids.EXP_RUN, "disabled"), True, False)],
        prevent_initial_call=True,
    )
    def _export(set_progress, _n, volume, what, fmt):
        return run_export(config, volume, what, fmt, set_progress, prefix)
