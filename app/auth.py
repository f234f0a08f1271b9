"""Login for the lab-shared mode (``APP_AUTH=1``): one guard in front of every route, Dash's included.

Browsers sign in on ``/login`` (flask-login session cookie: HttpOnly, SameSite=Lax, Secure with
``APP_SECURE_COOKIES``), and each sign-in is also a row on the server (``users.open_session``)
that signing out or a new password deletes, so an old cookie cannot come back; scripts send
``Authorization: Bearer <token>`` (``python -m app users token NAME``). Without either, a page
request is redirected to the login page and anything else (Dash's endpoints, tiles, downloads,
the API) answers 401. Only static code and the login page itself are public (``is_public``);
``tests/app/test_auth.py`` crawls ``url_map`` so a route added later cannot slip out. Off
(single-user mode), nothing is installed but ``/healthz``.
"""
from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections import defaultdict, deque
from datetime import timedelta
from html import escape
from urllib.parse import urlsplit

from flask import Flask, Response, g, redirect, request, session
from flask_login import LoginManager, current_user, login_user, logout_user

from app import access
from app.services import users

log = logging.getLogger(__name__)
PUBLIC_PATHS = ("/login", "/healthz", "/_favicon.ico")
PUBLIC_PREFIXES = ("/_dash-component-suites/", "/assets/")     # library and app code, no data
SESSION_HOURS = 12
SIGN_IN_KEY = "sign_in"     # the Flask session's entry naming its sign-in row (users.open_session)
MAX_FAILURES, FAILURE_WINDOW_S = 5, 300.0


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Throttle:
    """Failed logins per (address, name): after ``MAX_FAILURES`` in the window, refuse until it slides.

    Kept in the web process's memory: with several gunicorn workers each counts its own.
    """

    def __init__(self, limit: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S):
        self.limit, self.window_s = limit, window_s
        self._fails: dict[tuple[str, str], deque] = defaultdict(deque)

    def wait_s(self, key: tuple[str, str], now: float | None = None) -> float:
        """Seconds until ``key`` may try again (0 = now)."""
        now = time.monotonic() if now is None else now
        fails = self._fails[key]
        while fails and now - fails[0] > self.window_s:
            fails.popleft()
        return self.window_s - (now - fails[0]) if len(fails) >= self.limit else 0.0

    def fail(self, key: tuple[str, str]) -> None:
        self._fails[key].append(time.monotonic())

    def clear(self, key: tuple[str, str]) -> None:
        self._fails.pop(key, None)


def _safe_next(target: str | None) -> str:
    """Only a path on this server (no scheme, no host, no '//'): the login is no open redirect."""
    parts = urlsplit(target or "/")
    if parts.scheme or parts.netloc or not (target or "/").startswith("/") or (target or "").startswith("//"):
        return "/"
    return target or "/"


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def login_page(message: str = "", name: str = "", next_url: str = "/", status: int = 200) -> Response:
    """The sign-in form, in the app's Bootstrap look (vendored CSS: works offline)."""
    alert = f'<div class="alert alert-danger py-2" id="login-error">{escape(message)}</div>' if message else ""
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ActiveSeg: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/00-bootstrap-5.3.8.min.css"></head>
<body class="bg-light"><nav class="navbar navbar-dark bg-dark mb-4"><div class="container">
<span class="navbar-brand">ActiveSeg</span></div></nav>
<main class="container" style="max-width: 24rem"><h1 class="h4 mb-3">Sign in</h1>{alert}
<form method="post" action="/login" id="login-form">
<input type="hidden" name="csrf" value="{_csrf_token()}"><input type="hidden" name="next" value="{escape(next_url)}">
<div class="mb-2"><label class="form-label" for="login-name">User name</label>
<input class="form-control" id="login-name" name="name" value="{escape(name)}" autocomplete="username" required autofocus></div>
<div class="mb-3"><label class="form-label" for="login-password">Password</label>
<input class="form-control" id="login-password" name="password" type="password" autocomplete="current-password" required></div>
<button class="btn btn-primary w-100" id="login-submit" type="submit">Sign in</button></form>
<p class="text-muted small mt-3">Accounts are made by the server's admin: <code>python -m app users add NAME</code>.</p>
</main></body></html>"""
    return Response(body, status=status, mimetype="text/html")


def _wants_page() -> bool:
    return request.method == "GET" and not request.path.startswith("/_") and "text/html" in request.headers.get("Accept", "")


def _deny() -> Response:
    token = request.headers.get("Authorization", "").startswith("Bearer ")
    log.info("refused %s %s from %s: %s", request.method, request.path, request.remote_addr,
             "unknown or revoked API token" if token else "not signed in (or the session expired)")
    if _wants_page():
        return redirect(f"/login?next={request.full_path.rstrip('?')}")
    return Response('{"error": "login required: sign in on /login or send Authorization: Bearer <token>"}',
                    status=401, mimetype="application/json")


def _named_ids(payload: dict) -> list[tuple[str, int]]:
    """("project" | "volume", id) named by a Dash callback's inputs and state: the pickers, and the
    stores that carry their choice to every panel (project id, volume info, view state)."""
    from layouts import ids

    where = {ids.PROJECT_SELECT: ("project", None), ids.PROJECT_STORE: ("project", None),
             ids.VOLUME_SELECT: ("volume", None), ids.VOLUME_STORE: ("volume", "id"), ids.VIEW_STATE: ("volume", "vid")}
    found = []
    for item in [*(payload.get("inputs") or []), *(payload.get("state") or [])]:
        for entry in item if isinstance(item, list) else [item]:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or entry["id"] not in where:
                continue             # pattern-matching ids (dicts) never name a project or volume
            kind, key = where[entry["id"]]
            value = entry.get("value")
            value = value.get(key) if key and isinstance(value, dict) else (None if key else value)
            if value is not None:
                found.append((kind, int(value)))
    return found


def _check_selected_ids(config) -> Response | None:
    """Refuse a callback that names a project or volume the user cannot see, before it runs.

    Background callbacks run in a job process (a Celery worker has no request and no user), so
    the row filters of ``app.access`` alone would not stop a forged id there.
    """
    from app.errors import NotFound
    from app.services import projects

    try:
        payload = request.get_json(silent=True) or {}
        for kind, value in _named_ids(payload):
            if kind == "volume":
                projects.volume_info(config, value)
            else:
                projects.project_info(config, value)
    except (NotFound, TypeError, ValueError) as exc:
        log.warning("user %r named a project or volume out of reach: %s", current_user.name, exc)
        return Response('{"error": "no such project or volume"}', status=404, mimetype="application/json")
    return None


def _configure_cookies(server: Flask, config) -> None:
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=config.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True, REMEMBER_COOKIE_SAMESITE="Lax", REMEMBER_COOKIE_SECURE=config.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS))


def _register_login_views(server: Flask, config, throttle: Throttle) -> None:
    @server.route("/login", methods=["GET", "POST"])
    def login():
        next_url = _safe_next(request.values.get("next"))
        if request.method == "GET":
            return login_page(next_url=next_url)
        name = request.form.get("name", "").strip()
        if not hmac.compare_digest(request.form.get("csrf", ""), session.get("csrf", "")):
            log.warning("login form without a valid CSRF token from %s", request.remote_addr)
            return login_page("The form expired: please sign in again.", name, next_url, status=400)
        key = (request.remote_addr or "?", name.lower())
        wait = throttle.wait_s(key)
        if wait:
            log.warning("login throttled for %r from %s", name, request.remote_addr)
            return login_page(f"Too many failed sign-ins: try again in {int(wait) + 1} s.", name, next_url, status=429)
        account = users.verify_password(config, name, request.form.get("password", ""))
        if account is None:
            throttle.fail(key)
            log.warning("failed login for %r from %s", name, request.remote_addr)
            return login_page("Unknown user name or wrong password.", name, next_url, status=401)
        throttle.clear(key)
        session.clear()                       # a fresh session (and CSRF token) after signing in
        session.permanent = True
        session[SIGN_IN_KEY] = users.open_session(config, account)
        login_user(account)
        log.info("user %r signed in from %s", account.name, request.remote_addr)
        return redirect(next_url)

    @server.route("/logout")
    def logout():
        name = getattr(current_user, "name", None)
        users.close_session(config, session.get(SIGN_IN_KEY))    # on the server: no cookie from before opens anything
        logout_user()
        session.clear()
        if name:
            log.info("user %r signed out", name)
        return redirect("/login")


def install_auth(server: Flask, config) -> bool:
    """Guard every request when ``config.auth_enabled``; returns whether a guard was installed."""

    @server.route("/healthz")
    def healthz():
        return {"ok": True}

    if not config.auth_enabled:
        return False
    _configure_cookies(server, config)
    manager = LoginManager(server)
    manager.user_loader(lambda user_id: users.account_for_session(config, user_id, session.get(SIGN_IN_KEY)))

    @manager.request_loader
    def _token(req):
        header = req.headers.get("Authorization", "")
        return users.account_for_token(config, header[7:].strip()) if header.startswith("Bearer ") else None

    _register_login_views(server, config, Throttle())

    @server.before_request
    def _guard():
        if is_public(request.path):
            return None
        if not current_user.is_authenticated:
            return _deny()
        g.access_token = access.set_account(current_user._get_current_object())   # app.access filters rows
        if request.path == "/_dash-update-component":
            return _check_selected_ids(config)
        return None

    @server.teardown_request
    def _forget_account(_exc):
        token = g.pop("access_token", None)
        if token is not None:
            access.reset(token)

    return True


def signed_in_name() -> str | None:
    """The signed-in user's name in a request of the shared mode (None in single-user mode)."""
    try:
        return current_user.name if current_user.is_authenticated else None
    except (AttributeError, RuntimeError):    # no login manager (single-user) or outside a request
        return None
