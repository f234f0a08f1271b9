"""Who may see and change which project (shared mode): enforced once, in the ORM, for every query.

While a request of a signed-in user runs (``acting_as``), every ORM ``SELECT`` gets a criterion
per table that keeps only rows of projects the user may see: their own, those shared with them,
and ownerless ones (made in single-user mode, like the demo). A row of another user's project
is then as absent as a deleted one: guessing an id gives "no such volume", whatever service
or route asked. Every flush checks that what it inserts, changes or deletes belongs to a
project the user may edit. A new project is owned by whoever made it.

Without an account (single-user mode, background processes started by a checked request) no
criterion applies.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from sqlalchemy import event, or_, select
from sqlalchemy.orm import Session, with_loader_criteria

from app.errors import NotFound, UserError
from app.models import ALRound, Job, ModelVersion, Project, ProjectShare, Segmentation, Suggestion, VolumeRecord

_ACCOUNT: ContextVar = ContextVar("activeseg_account", default=None)
_PROJECT, _SHARE, _VOLUME, _ROUND = (t.__table__ for t in (Project, ProjectShare, VolumeRecord, ALRound))


class Forbidden(UserError):
    """A change to a project the user may only read."""


def current_account():
    """The account the running request acts for (None: no restriction)."""
    return _ACCOUNT.get()


def set_account(account) -> object:
    """Act for ``account`` until ``reset(token)``; returns the token (Flask's before/teardown request)."""
    return _ACCOUNT.set(account)


def reset(token) -> None:
    _ACCOUNT.reset(token)


@contextmanager
def acting_as(account) -> Iterator[None]:
    token = _ACCOUNT.set(account)
    try:
        yield
    finally:
        _ACCOUNT.reset(token)


def _visible_projects(user_id: int, edit: bool = False):
    """Core SELECT of the project ids ``user_id`` may see (or, with ``edit``, change)."""
    shared = select(_SHARE.c.project_id).where(_SHARE.c.user_id == user_id)
    if edit:
        shared = shared.where(_SHARE.c.can_edit.is_(True))
    return select(_PROJECT.c.id).where(or_(_PROJECT.c.owner_id == user_id, _PROJECT.c.owner_id.is_(None),
                                           _PROJECT.c.id.in_(shared)))


def _criteria(user_id: int) -> list:
    projects = _visible_projects(user_id)
    volumes = select(_VOLUME.c.id).where(_VOLUME.c.project_id.in_(projects))
    rounds = select(_ROUND.c.id).where(_ROUND.c.project_id.in_(projects))
    return [
        with_loader_criteria(Project, Project.id.in_(projects)),
        with_loader_criteria(VolumeRecord, VolumeRecord.project_id.in_(projects)),
        with_loader_criteria(ModelVersion, ModelVersion.project_id.in_(projects)),
        with_loader_criteria(ALRound, ALRound.project_id.in_(projects)),
        with_loader_criteria(Suggestion, Suggestion.round_id.in_(rounds)),
        with_loader_criteria(Segmentation, Segmentation.volume_id.in_(volumes)),
        with_loader_criteria(Job, or_(Job.project_id.is_(None), Job.project_id.in_(projects))),
        with_loader_criteria(ProjectShare, or_(ProjectShare.user_id == user_id,
                                               ProjectShare.project_id.in_(projects))),
    ]


def _only_visible_rows(state) -> None:
    account = _ACCOUNT.get()
    if account is None or not state.is_select or state.is_column_load or state.is_relationship_load:
        return
    state.statement = state.statement.options(*_criteria(account.id))


def _project_of(s: Session, obj) -> int | None:
    """The project a row belongs to (None: a row of no project, e.g. a job of the whole server)."""
    if isinstance(obj, Project):
        return obj.id
    if isinstance(obj, (VolumeRecord, ModelVersion, ALRound, Job, ProjectShare)):
        return obj.project_id
    if isinstance(obj, Suggestion):
        return s.execute(select(_ROUND.c.project_id).where(_ROUND.c.id == obj.round_id)).scalar()
    if isinstance(obj, Segmentation):
        return s.execute(select(_VOLUME.c.project_id).where(_VOLUME.c.id == obj.volume_id)).scalar()
    return None


def _only_editable_changes(s: Session, _ctx, _instances) -> None:
    account = _ACCOUNT.get()
    if account is None:
        return
    for obj in s.new:
        if isinstance(obj, Project) and obj.owner_id is None:
            obj.owner_id = account.id          # a new project belongs to whoever made it
    changed = [o for o in (*s.new, *s.dirty, *s.deleted) if not (isinstance(o, Project) and o in s.new)]
    if not changed:
        return
    with s.no_autoflush:
        visible = set(s.execute(_visible_projects(account.id)).scalars())
        editable = set(s.execute(_visible_projects(account.id, edit=True)).scalars())
        owned = set(s.execute(select(_PROJECT.c.id).where(_PROJECT.c.owner_id == account.id)).scalars())
        for obj in changed:
            pid = _project_of(s, obj)
            if pid is None:
                continue
            if pid not in visible:
                raise NotFound(f"Project {pid} does not exist (any more).")
            if isinstance(obj, (Project, ProjectShare)) and pid not in owned and not _ownerless(s, pid):
                raise Forbidden("only the project's owner may rename, delete or share it")
            if pid not in editable:
                raise Forbidden("this project is shared with you read-only: nothing was changed")


def install_row_filters() -> None:
    """Register the filters on every ORM Session (idempotent; ``app.db`` calls it for each database)."""
    for name, fn in (("do_orm_execute", _only_visible_rows), ("before_flush", _only_editable_changes)):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


def _ownerless(s: Session, project_id: int) -> bool:
    return s.execute(select(_PROJECT.c.owner_id).where(_PROJECT.c.id == project_id)).scalar() is None


def require_edit(s: Session, project_id: int) -> None:
    """Refuse before writing files (label stores) when the project is read-only for the request's user."""
    account = _ACCOUNT.get()
    if account is None:
        return
    ok = s.execute(_visible_projects(account.id, edit=True).where(_PROJECT.c.id == project_id)).first()
    if ok is None:
        raise Forbidden("this project is shared with you read-only: nothing was changed")

