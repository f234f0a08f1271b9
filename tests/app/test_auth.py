"""Shared mode (APP_AUTH=1): every route is behind the login, the login itself is hard to abuse.

The route crawl builds a request for every rule of ``server.url_map`` (Dash's own endpoints,
tiles, overlays, downloads, whatever is added later) and checks that, without a session, each
answers 401 or a redirect to the login page, except the few public static ones named here.
"""
from __future__ import annotations


import pytest
from werkzeug.routing import IntegerConverter

from app.auth import PUBLIC_PATHS, Throttle, is_public
from app.services import users
from tests.app.envs import sign_in

SECRET = "0123456789abcdef-test-secret"
PASSWORD = "correct horse battery"


@pytest.fixture
def shared(config):
    return config.with_(auth_enabled=True, secret_key=SECRET)


@pytest.fixture
def server(shared, volume):
    from app.server import create_app

    users.add_user(shared, "ann", PASSWORD)
    return create_app(shared).server


def _sample_url(rule) -> str:
    values = {}
    for arg in rule.arguments:
        values[arg] = 1 if isinstance(rule._converters.get(arg), IntegerConverter) else "x.png"
    return rule.build(values)[1]


def _login(client, name="ann", password=PASSWORD, next_url="/"):
    return sign_in(client, name, password, next_url)


def test_every_route_needs_a_login_except_static_code(server):
    client = server.test_client()
    checked, public = 0, set()
    for rule in server.url_map.iter_rules():
        url = _sample_url(rule)
        if is_public(url):
            public.add(rule.rule)
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            resp = client.open(url, method=method, headers={"Accept": "text/html"})
            redirected = resp.status_code == 302 and resp.headers["Location"].startswith("/login")
            assert resp.status_code == 401 or redirected, f"{method} {url} ({rule.rule}) answered {resp.status_code}"
            checked += 1
    assert checked >= 12, "the crawl found fewer routes than the app has"
    assert {"/_dash-layout", "/_dash-update-component", "/tiles/<int:vid>/<plane>/<int:index>.png"} <= \
        {r.rule for r in server.url_map.iter_rules()} - public
    for rule in public:   # public: the login page, the health check, and library / app code only
        assert rule in PUBLIC_PATHS or rule.startswith(("/_dash-component-suites/", "/assets/")), rule


def test_a_page_request_is_sent_to_the_login_and_back(server, volume):
    client = server.test_client()
    resp = client.get("/", headers={"Accept": "text/html"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/login?next=/"
    assert client.get("/_dash-layout").status_code == 401
    resp = _login(client, next_url="/")
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    layout = client.get("/_dash-layout")
    assert layout.status_code == 200 and b"signed in as ann" in layout.data
    assert client.get(f"/tiles/{volume['id']}/xy/0.png").status_code == 200
    assert client.get("/logout").status_code == 302
    assert client.get("/_dash-layout").status_code == 401


def test_the_session_cookie_is_httponly_and_samesite(shared, volume):
    from app.server import create_app

    users.add_user(shared, "ann", PASSWORD)
    for secure in (False, True):
        client = create_app(shared.with_(secure_cookies=secure)).server.test_client()
        cookie = _login(client).headers.get("Set-Cookie", "")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert ("Secure" in cookie) is secure


def test_wrong_password_unknown_user_and_missing_csrf_are_refused(server):
    client = server.test_client()
    for name, password in (("ann", "wrong password"), ("bob", PASSWORD)):
        resp = _login(client, name, password)
        assert resp.status_code == 401 and b"Unknown user name or wrong password" in resp.data
        assert client.get("/_dash-layout").status_code == 401
    resp = client.post("/login", data={"name": "ann", "password": PASSWORD, "csrf": "forged"})
    assert resp.status_code == 400 and b"form expired" in resp.data
    assert client.get("/_dash-layout").status_code == 401


def test_failed_logins_are_throttled(server):
    client = server.test_client()
    for _ in range(5):
        assert _login(client, password="wrong password").status_code == 401
    resp = _login(client)     # even the right password waits now
    assert resp.status_code == 429 and b"Too many failed sign-ins" in resp.data
    assert client.get("/_dash-layout").status_code == 401


def test_the_throttle_forgets_failures_after_its_window():
    t = Throttle(limit=2, window_s=10)
    key = ("1.2.3.4", "ann")
    t.fail(key)
    t.fail(key)
    assert t.wait_s(key) > 9
    assert t.wait_s(key, now=t._fails[key][-1] + 11) == 0


def test_the_login_is_no_open_redirect(server):
    client = server.test_client()
    for target in ("//evil.example/x", "https://evil.example/", "javascript:alert(1)"):
        assert _login(client, next_url=target).headers["Location"] == "/"
        client.get("/logout")


def test_api_tokens_work_until_the_user_is_removed(shared, server, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="app.auth")
    client = server.test_client()
    token = users.new_token(shared, "ann")
    assert client.get("/_dash-layout", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/_dash-layout", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    _login(client)
    users.remove_user(shared, "ann")
    assert client.get("/_dash-layout", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/_dash-layout").status_code == 401, "the session of a removed user still worked"
    assert "unknown or revoked API token" in caplog.text and "not signed in" in caplog.text


def test_an_expired_session_is_sent_back_to_the_login(shared, volume):
    import time
    from datetime import timedelta

    from app.server import create_app

    users.add_user(shared, "ann", PASSWORD)
    server = create_app(shared).server
    server.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=1)
    client = server.test_client()
    _login(client)
    assert client.get("/_dash-layout").status_code == 200
    time.sleep(2.5)                 # cookie expiry and the signature's age both count whole seconds
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/", headers={"Accept": "text/html"}).headers["Location"].startswith("/login")


def test_shared_mode_refuses_to_start_without_a_secret_key(config):
    with pytest.raises(ValueError, match="APP_SECRET_KEY"):
        config.with_(auth_enabled=True)
    with pytest.raises(ValueError, match="at least 16"):
        config.with_(auth_enabled=True, secret_key="short")


def test_single_user_mode_has_no_login(client):
    assert client.get("/_dash-layout").status_code == 200
    assert b"signed in as" not in client.get("/_dash-layout").data
    assert client.get("/login").status_code in (200, 404)   # Dash's catch-all page, no login form
    assert b"login-form" not in client.get("/login").data


def test_signing_out_ends_the_session_on_the_server(shared, server):
    """A cookie from before the sign-out opens nothing: not a copy of it, not a late response's.

    A Dash callback in flight when the user signs out answers with the signed-in cookie (Flask
    re-sends a permanent session on every response); the browser stores it after the sign-out's
    cleared one. Only a session the server itself ends is closed whatever cookie comes back.
    """
    client = server.test_client()
    _login(client)
    before = client.get_cookie("session").value
    assert client.get("/_dash-layout").status_code == 200
    assert client.get("/logout").status_code == 302
    client.set_cookie("session", before)              # what a late response puts back
    assert client.get("/_dash-layout").status_code == 401, "the cookie from before the sign-out still works"
    assert client.get("/", headers={"Accept": "text/html"}).headers["Location"].startswith("/login")


def test_a_new_password_ends_the_users_other_sessions(shared, server):
    laptop, lab = server.test_client(), server.test_client()
    _login(laptop)
    _login(lab)
    users.set_password(shared, "ann", "a brand new password")
    assert laptop.get("/_dash-layout").status_code == 401
    assert lab.get("/_dash-layout").status_code == 401
    _login(lab, password="a brand new password")
    assert lab.get("/_dash-layout").status_code == 200


def test_signing_out_in_one_browser_keeps_the_other_signed_in(shared, server):
    laptop, lab = server.test_client(), server.test_client()
    _login(laptop)
    _login(lab)
    laptop.get("/logout")
    assert laptop.get("/_dash-layout").status_code == 401
    assert lab.get("/_dash-layout").status_code == 200


def test_a_sign_in_ends_after_its_longest_life_however_active(shared, server):
    from datetime import timedelta

    from sqlalchemy import select, update

    from app.db import session_scope
    from app.models import LoginSession, utcnow

    client = server.test_client()
    _login(client)
    assert client.get("/_dash-layout").status_code == 200
    with session_scope(shared) as s:
        s.execute(update(LoginSession).values(created=utcnow() - timedelta(days=users.SIGN_IN_MAX_DAYS, minutes=1)))
    assert client.get("/_dash-layout").status_code == 401
    _login(server.test_client())                  # a new sign-in clears the stale rows away
    with session_scope(shared) as s:
        assert len(s.scalars(select(LoginSession)).all()) == 1
