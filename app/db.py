"""SQLite persistence: one engine per workspace file, WAL mode, foreign keys, short transactions,
one session per request or job (:class:`ServiceContext`).

Engines are cached per database path. Forks (Dash job processes): SQLite keeps per-file lock
state in process-global memory, so a child forked while the parent holds *any* connection to a
file inherits "locks held" that it does not hold; its new connections then take no real lock.
Measured: once the server died, a restarted server that opened and closed the database deleted
the WAL under the still-running job, and the job's later commit (a model version) was lost.
So jobs are forked inside :func:`quiet_for_fork` (no session open, every pooled connection
closed), and a child drops the inherited pools without closing them (closing an inherited
handle may checkpoint and delete the parent's WAL).
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

_LOCK = threading.Lock()
_DATABASES: dict[str, "Database"] = {}
_INHERITED: list = []     # a forked child's copies of the parent's pools: kept alive, never closed


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def add_missing_columns(engine: Engine, metadata) -> list[str]:
    """Bring a workspace made by an older version up to date: add each new (nullable) column.

    ``create_all`` makes missing tables only. Columns added since are nullable without a default,
    which SQLite's ``ALTER TABLE ... ADD COLUMN`` accepts; returns "table.column" of each added.
    """
    from sqlalchemy import inspect

    added = []
    with engine.begin() as conn:
        insp = inspect(conn)
        for table in metadata.sorted_tables:
            have = {c["name"] for c in insp.get_columns(table.name)}
            for col in table.columns:
                if col.name not in have:
                    if not col.nullable:
                        raise RuntimeError(f"{table.name}.{col.name} is new and NOT NULL: add a real migration")
                    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{col.name}" '
                                         f"{col.type.compile(engine.dialect)}")
                    added.append(f"{table.name}.{col.name}")
    return added


class Database:
    """Engine + session factory for one SQLite file; creates the tables on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(
            f"sqlite:///{self.path}", connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        from app.access import install_row_filters
        from app.models import Base

        install_row_filters()             # the shared mode's per-user row filters (no-ops without a user)
        Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine, Base.metadata)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self, reuse: Session | None = None) -> Iterator[Session]:
        """A transaction: commit on success, roll back on error. A session made here is closed after;
        a ``reuse``d one (a ServiceContext's) forgets its objects instead, so the next transaction
        reads fresh rows, and is kept."""
        _GATE.enter()
        try:
            s = reuse if reuse is not None else self._sessions()
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise
            finally:
                if reuse is None:
                    s.close()
                else:
                    s.expunge_all()
        finally:
            _GATE.leave()

    def new_session(self) -> Session:
        return self._sessions()

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


class ServiceContext:
    """What one HTTP request or one job shares: its config and one Session of its database.

    Services take the Config and open ``session_scope(config)`` where they touch the database;
    inside a context (entered once per request by ``app.server``, once per job by
    ``app.jobs.run_job``) those scopes use the context's one Session instead of making their own
    (a suggestion request made eight). The outermost scope is a transaction, committed at its end;
    scopes nested in it join it. Transactions stay short on purpose: SQLite serialises writers, a
    job computes for minutes between its writes, and a fork waits until none is open
    (:func:`quiet_for_fork`). Another thread, or a forked child, is not served by it (``owner``)."""

    def __init__(self, config):
        self.config = config                # the database is opened on first use: most requests are assets
        self.owner = (os.getpid(), threading.get_ident())   # a Session is not shared across threads
        self._session: Session | None = None
        self._depth = 0

    def serves(self, config) -> bool:
        """True for a config of the same workspace, in the thread and process that made the context."""
        return (self.owner == (os.getpid(), threading.get_ident())
                and (config is self.config or config.workspace == self.config.workspace))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        if self._depth:                       # nested: join the open transaction
            self._depth += 1
            try:
                yield self._session
            finally:
                self._depth -= 1
            return
        db = database(self.config)
        if self._session is None:
            self._session = db.new_session()
        self._depth = 1
        try:
            with db.session(reuse=self._session) as s:
                yield s
        finally:
            self._depth = 0

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


_CONTEXT: ContextVar[ServiceContext | None] = ContextVar("activeseg_service_context", default=None)


def open_context(config) -> object:
    """Enter a ServiceContext for this thread until ``close_context(token)`` (Flask's before/teardown request)."""
    return _CONTEXT.set(ServiceContext(config))


def close_context(token) -> None:
    ctx = _CONTEXT.get()
    _CONTEXT.reset(token)
    if ctx is not None:
        ctx.close()


@contextmanager
def service_context(config) -> Iterator[ServiceContext]:
    """``with service_context(config):`` around a job: its session scopes share one Session."""
    token = open_context(config)
    try:
        yield _CONTEXT.get()
    finally:
        close_context(token)


@contextmanager
def session_scope(config) -> Iterator[Session]:
    """``with session_scope(config) as s: ...`` on the workspace database: a transaction, in the
    running request's or job's session when there is one (``ServiceContext``)."""
    ctx = _CONTEXT.get()
    if ctx is not None and ctx.serves(config):
        with ctx.transaction() as s:
            yield s
    else:
        with database(config).session() as s:
            yield s


def forget_all() -> None:
    """Drop every cached engine (tests that simulate a restart; forked children)."""
    with _LOCK:
        for db in _DATABASES.values():
            db.engine.dispose(close=False)
        _DATABASES.clear()


class _ForkGate:
    """Counts open sessions; while a fork waits, new ones (not nested ones) wait for it."""

    def __init__(self):
        self.cond = threading.Condition()
        self.open, self.forking = 0, False
        self.local = threading.local()

    def enter(self) -> None:
        depth = getattr(self.local, "depth", 0)
        with self.cond:
            while self.forking and depth == 0:   # a nested session must not wait: the fork waits for it
                self.cond.wait()
            self.open += 1
        self.local.depth = depth + 1

    def leave(self) -> None:
        self.local.depth = max(0, getattr(self.local, "depth", 1) - 1)   # a session left open across a fork
        with self.cond:
            self.open = max(0, self.open - 1)
            self.cond.notify_all()


_GATE = _ForkGate()


@contextmanager
def quiet_for_fork(timeout: float = 10.0) -> Iterator[bool]:
    """Fork inside this: no session is open and no SQLite connection of this process exists.

    Yields False when open sessions did not end within ``timeout`` (the fork goes on anyway).
    Pools reopen connections on demand afterwards.
    """
    with _GATE.cond:
        _GATE.cond.wait_for(lambda: not _GATE.forking)
        _GATE.forking = True
        quiet = _GATE.cond.wait_for(lambda: _GATE.open == 0, timeout)
    try:
        with _LOCK:                       # no engine is being created (create_all) meanwhile
            for db in _DATABASES.values():
                db.engine.dispose()       # close the idle pooled connections
            yield quiet
    finally:
        with _GATE.cond:
            _GATE.forking = False
            _GATE.cond.notify_all()


def forget_inherited() -> None:
    """In a forked child: new pools for every engine; the inherited connections are never touched."""
    for db in list(_DATABASES.values()):
        _INHERITED.append(db.engine.pool)   # garbage-collecting them would close the parent's handles
        db.engine.dispose(close=False)


def _after_fork_in_child() -> None:
    global _LOCK, _GATE
    _LOCK = threading.Lock()   # another thread may have held it at fork time
    _GATE = _ForkGate()        # the fork may have happened inside quiet_for_fork
    forget_inherited()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
