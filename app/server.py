"""Build the Dash app: config, database, jobs manager, routes, auth, layout and callbacks."""
from __future__ import annotations

import logging
from pathlib import Path

import dash
from flask import g

from app import db
from app.config import Config
from app.db import database
from app.workspace import Workspace

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parent / "assets"   # vendored Bootstrap CSS (works offline), keys, styles


def show_callback_error(exc: Exception) -> None:
    """Global safety net: an exception escaping any callback becomes the page alert, not a silent failure."""
    from dash import set_props

    from app.errors import user_message
    from layouts import ids

    set_props(ids.ALERT, {"children": user_message(exc), "is_open": True})


def _register_scripts(app: dash.Dash) -> None:
    """Let every process serve the page's scripts, not only one that has rendered the page.

    Dash fills its list of servable script paths while rendering the index page; a gunicorn
    worker whose first request is a script (the page came from another worker) answered 500.
    Rendering the index once here, before gunicorn forks its workers, fills it for all.
    """
    with app.server.test_request_context("/"):
        app._setup_server()
        app.index()


def install_service_context(server, config: Config) -> None:
    """One ``app.db.ServiceContext`` per request: the session scopes of its services share one Session."""
    @server.before_request
    def _open_context():
        g.service_context_token = db.open_context(config)

    @server.teardown_request
    def _close_context(_exc):
        token = g.pop("service_context_token", None)
        if token is not None:
            db.close_context(token)


def create_app(config: Config | None = None, preparing=None) -> dash.Dash:
    """The ActiveSeg Dash app for ``config`` (defaults from the environment).

    ``preparing`` (an ``app.demo.DemoPreparation``): until it is ready the page says the demo
    is being prepared and reloads itself.
    """
    from app import job_manager, jobs
    from app.api import register_api
    from app.auth import install_auth, signed_in_name
    from app.routes import register_routes
    from app.services.active import strategy_options
    from callbacks import register_all
    from layouts.page import build_layout, preparing_layout

    config = config or Config.from_env()
    Workspace(config.workspace).ensure()
    database(config)                      # create tables
    jobs.recover_stale(config, reason=jobs.SERVER_STOPPED)   # jobs of a previous server process
    app = dash.Dash(
        __name__,
        title="ActiveSeg",
        assets_folder=str(ASSETS),
        background_callback_manager=job_manager.make_background_manager(config),
        suppress_callback_exceptions=True,
        update_title=None,
        on_error=show_callback_error,
    )
    server = app.server
    server.secret_key = config.secret_key
    # base64 adds 4/3; headroom so a slightly-too-big upload reaches the clear size message
    server.config["MAX_CONTENT_LENGTH"] = int(config.max_upload_bytes * 1.5) + 64 * 2**20
    server.config["ACTIVESEG"] = config
    install_service_context(server, config)
    install_auth(server, config)
    app._activeseg_tiles = register_routes(server, config)   # type: ignore[attr-defined]
    register_api(server, config)

    def serve_layout():
        if preparing is not None and not preparing.ready:
            return preparing_layout()
        return build_layout(strategy_options(), user=signed_in_name())

    app.layout = serve_layout
    register_all(app)
    _register_scripts(app)
    database(config).engine.dispose()     # processes forked from here inherit no SQLite state (app.db)
    return app
