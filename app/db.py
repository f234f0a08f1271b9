"""SQLite persistence: one engine per workspace file, WAL mode, foreign keys, short sessions.

Engines are cached per database path; a forked child (background job) drops the inherited
connection pool so parent and child never share a SQLite connection.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

_LOCK = threading.Lock()
_DATABASES: dict[str, "Database"] = {}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Database:
    """Engine + session factory for one SQLite file; creates the tables on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(
            f"sqlite:///{self.path}", connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        from app.models import Base

        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commit on success, roll back on error, always close."""
        s = self._sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()


def get_database(path: str | Path) -> Database:
    """The cached Database for a file (one engine per file per process)."""
    key = str(Path(path).resolve())
    with _LOCK:
        db = _DATABASES.get(key)
        if db is None:
            db = _DATABASES[key] = Database(key)
        return db


def database(config) -> Database:
    """The Database of a Config's workspace."""
    from app.workspace import Workspace

    return get_database(Workspace(config.workspace).ensure().db_path)


@contextmanager
def session_scope(config) -> Iterator[Session]:
    """``with session_scope(config) as s: ...`` on the workspace database."""
    with database(config).session() as s:
        yield s


def forget_all() -> None:
    """Drop every cached engine (tests that simulate a restart; forked children)."""
    with _LOCK:
        for db in _DATABASES.values():
            db.engine.dispose(close=False)
        _DATABASES.clear()


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()   # another thread may have held it at fork time
    for db in list(_DATABASES.values()):
        db.engine.dispose(close=False)   # do not close the parent's connections, just forget them


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
