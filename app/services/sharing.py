"""Who else may see or change a project (shared mode): shares, ownership, the owner's list.

Only a project's owner may share it, stop sharing it or give it away (``app.access`` refuses
the change otherwise); a project made in single-user mode has no owner until it is given.
"""
from __future__ import annotations

from sqlalchemy import select

from app.config import Config
from app.db import session_scope
from app.errors import NotFound, UserError
from app.models import Project, ProjectShare, User
from app.services.users import find_user


def _project(s, ref: int | str) -> Project:
    """A project by id (int) or by name (str)."""
    project = s.get(Project, ref) if isinstance(ref, int) else \
        s.scalars(select(Project).where(Project.name == ref)).first()
    if project is None:
        raise NotFound(f"no project {ref!r}" if isinstance(ref, int) else f"no project named {ref!r}")
    return project


def _user(s, name: str) -> User:
    user = find_user(s, (name or "").strip())
    if user is None:
        raise NotFound(f"no user named {name!r}")
    return user


def _share_row(s, project_id: int, user_id: int) -> ProjectShare | None:
    return s.scalars(select(ProjectShare).where(ProjectShare.project_id == project_id,
                                                ProjectShare.user_id == user_id)).first()


def share(config: Config, project: int | str, name: str, edit: bool = False) -> None:
    """Let ``name`` see ``project`` (and change it with ``edit``); sharing again updates the right."""
    with session_scope(config) as s:
        p, user = _project(s, project), _user(s, name)
        if p.owner_id == user.id:
            raise UserError(f"{user.name} owns {p.name!r} already")
        row = _share_row(s, p.id, user.id)
        if row is None:
            s.add(ProjectShare(project_id=p.id, user_id=user.id, can_edit=bool(edit)))
        else:
            row.can_edit = bool(edit)


def unshare(config: Config, project: int | str, name: str) -> None:
    with session_scope(config) as s:
        p, user = _project(s, project), _user(s, name)
        row = _share_row(s, p.id, user.id)
        if row is None:
            raise UserError(f"{p.name!r} is not shared with {user.name}")
        s.delete(row)


def give(config: Config, project: int | str, name: str) -> None:
    """Make ``name`` the owner of ``project`` (also claims a project made in single-user mode)."""
    with session_scope(config) as s:
        _project(s, project).owner_id = _user(s, name).id


def owned_projects(config: Config, name: str) -> list[str]:
    with session_scope(config) as s:
        user = _user(s, name)
        return list(s.scalars(select(Project.name).where(Project.owner_id == user.id).order_by(Project.name)))


def project_sharing(config: Config, project_id: int) -> dict:
    """``{"owner": name or None, "shares": [{"name", "edit"}]}`` of a project the caller may see."""
    with session_scope(config) as s:
        p = _project(s, int(project_id))
        owner = s.get(User, p.owner_id).name if p.owner_id else None
        rows = s.execute(select(User.name, ProjectShare.can_edit).join(ProjectShare, ProjectShare.user_id == User.id)
                         .where(ProjectShare.project_id == p.id).order_by(User.name)).all()
        return {"owner": owner, "shares": [{"name": n, "edit": bool(e)} for n, e in rows]}
