"""Authentication hook: one ``before_request`` guard in front of every route, Dash's included.

Off by default. ``install_auth(server, config, is_allowed)`` installs the guard; a later
flask-login integration only has to supply ``is_allowed`` (and a login view listed in
``public_paths``) - no route needs to change.
"""
from __future__ import annotations

from typing import Callable, Iterable

from flask import Flask, Request, Response, request

PUBLIC_PREFIXES = ("/login", "/healthz", "/_dash-component-suites/", "/assets/", "/_favicon.ico")


def _deny() -> Response:
    return Response("Login required", status=401, headers={"WWW-Authenticate": 'Basic realm="ActiveSeg"'})


def install_auth(server: Flask, config, is_allowed: Callable[[Request], bool] | None = None,
                 public_paths: Iterable[str] = PUBLIC_PREFIXES) -> bool:
    """Guard every request when ``config.auth_enabled``; returns whether a guard was installed."""

    @server.route("/healthz")
    def healthz():
        return {"ok": True}

    if not config.auth_enabled:
        return False
    if is_allowed is None:
        raise RuntimeError("APP_AUTH is on but no login backend is installed (flask-login integration pending).")
    prefixes = tuple(public_paths)

    @server.before_request
    def _guard():
        if request.path.startswith(prefixes):
            return None
        return None if is_allowed(request) else _deny()

    return True
