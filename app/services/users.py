"""Users of the lab-shared mode: add, remove, change a password, issue an API token, check a login.

Passwords are kept only as werkzeug hashes and API tokens only as their sha256 (a token is
shown once, when it is made). Nothing here logs a password or a token.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from app.config import Config
from app.db import session_scope
from app.errors import NotFound, UserError
from app.models import User

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_PASSWORD = 8
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


def account(config: Config, user_id: str | int) -> Account | None:
    """flask-login's user loader: a session of a deleted user loads nothing."""
    try:
        uid = int(user_id)
    except (TypeError, ValueError):
        return None
    with session_scope(config) as s:
        user = s.get(User, uid)
        return Account(user.id, user.name) if user else None
