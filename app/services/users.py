"""Users of the lab-shared mode: add, remove, change a password, issue an API token, check a login.

Passwords are kept only as werkzeug hashes, API tokens and sign-in keys only as their sha256 (a
token is shown once, when it is made). Nothing here logs a password, a token or a key.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from werkzeug.security import check_password_hash, generate_password_hash

from app.config import Config
from app.db import session_scope
from app.errors import NotFound, UserError
from app.models import LoginSession, User, utcnow

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_PASSWORD = 8
#: However active, a browser signs in again after this long (its cookie alone would slide forever).
SIGN_IN_MAX_DAYS = 7
#: Checked against when the name is unknown, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = generate_password_hash("activeseg-not-a-user")


@dataclass(frozen=True)
class Account:
    """What the web side keeps of a user (never the hashes)."""

    id: int
    name: str

    # flask-login's user protocol
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise UserError(f"user name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    return password


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find_user(s, name: str) -> User | None:
    return s.scalars(select(User).where(User.name == name)).first()


def add_user(config: Config, name: str, password: str) -> Account:
    check_name(name)
    check_password(password)
    with session_scope(config) as s:
        if find_user(s, name):
            raise UserError(f"user {name!r} exists already (change the password with 'users passwd')")
        user = User(name=name, password_hash=generate_password_hash(password))
        s.add(user)
        s.flush()
        return Account(user.id, user.name)


def remove_user(config: Config, name: str, give_to: str | None = None) -> None:
    """Remove a user; their projects go to ``give_to`` (refused without one: data is never orphaned)."""
    from app.models import Project

    with session_scope(config) as s:
        user = find_user(s, name)
        if user is None:
            raise NotFound(f"no user named {name!r}")
        owned = list(s.scalars(select(Project).where(Project.owner_id == user.id)))
        heir = find_user(s, give_to) if give_to else None
        if owned and heir is None:
            names = ", ".join(repr(p.name) for p in owned)
            raise UserError(f"{name} owns {names}: give them to another user with --give-to NAME"
                            + (f" ({give_to!r} is no user)" if give_to else ""))
        for p in owned:
            p.owner_id = heir.id
        s.delete(user)


def set_password(config: Config, name: str, password: str) -> None:
    check_password(password)
    with session_scope(config) as s:
        user = find_user(s, name)
        if user is None:
            raise NotFound(f"no user named {name!r}")
        user.password_hash = generate_password_hash(password)
        s.execute(delete(LoginSession).where(LoginSession.user_id == user.id))   # whoever knew the old one is out


def list_users(config: Config) -> list[dict]:
    with session_scope(config) as s:
        return [{"id": u.id, "name": u.name, "created": u.created.isoformat(timespec="seconds"),
                 "api_token": bool(u.token_hash)} for u in s.scalars(select(User).order_by(User.name))]


def new_token(config: Config, name: str) -> str:
    """A fresh API token for ``name`` (replaces the old one); returned once, stored hashed."""
    token = secrets.token_urlsafe(32)
    with session_scope(config) as s:
        user = find_user(s, name)
        if user is None:
            raise NotFound(f"no user named {name!r}")
        user.token_hash = _token_digest(token)
    return token


def verify_password(config: Config, name: str, password: str) -> Account | None:
    """The account when name and password match; None otherwise (same cost either way)."""
    with session_scope(config) as s:
        user = find_user(s, name or "")
        stored = user.password_hash if user else _DUMMY_HASH
        ok = check_password_hash(stored, password or "")
        return Account(user.id, user.name) if user is not None and ok else None


def account_for_token(config: Config, token: str) -> Account | None:
    """The account whose API token this is (a deleted user's token matches nothing)."""
    if not token:
        return None
    digest = _token_digest(token)
    with session_scope(config) as s:
        user = s.scalars(select(User).where(User.token_hash == digest)).first()
        if user is None or not hmac.compare_digest(user.token_hash or "", digest):
            return None
        return Account(user.id, user.name)


def _sign_in_floor() -> datetime:
    """The oldest a live sign-in may be."""
    return utcnow() - timedelta(days=SIGN_IN_MAX_DAYS)


def open_session(config: Config, account: Account) -> str:
    """A new sign-in of ``account`` on the server: the key its cookie carries (stored hashed).

    Sign-ins past ``SIGN_IN_MAX_DAYS`` are dropped here, so the table holds live ones only.
    """
    key = secrets.token_urlsafe(32)
    with session_scope(config) as s:
        s.execute(delete(LoginSession).where(LoginSession.created < _sign_in_floor()))
        s.add(LoginSession(user_id=account.id, key_hash=_token_digest(key)))
    return key


def close_session(config: Config, key: str | None) -> None:
    """End one sign-in: its cookie, or any copy of it, opens nothing afterwards."""
    if key:
        with session_scope(config) as s:
            s.execute(delete(LoginSession).where(LoginSession.key_hash == _token_digest(key)))


def account_for_session(config: Config, user_id: str | int, key: str | None) -> Account | None:
    """flask-login's user loader: the account only while the cookie's sign-in is live on the server
    (not signed out, no new password since, the user not removed, younger than ``SIGN_IN_MAX_DAYS``)."""
    try:
        uid = int(user_id)
    except (TypeError, ValueError):
        return None
    if not key:
        return None
    with session_scope(config) as s:
        row = s.execute(select(User.id, User.name).join(LoginSession, LoginSession.user_id == User.id)
                        .where(User.id == uid, LoginSession.key_hash == _token_digest(key),
                               LoginSession.created >= _sign_in_floor())).first()
        return Account(row.id, row.name) if row else None
