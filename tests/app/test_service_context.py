"""One ServiceContext per request or job: its services share one Session; transactions stay short and fresh."""
from __future__ import annotations

import threading
from functools import partial

import numpy as np
import pytest
import sqlalchemy.orm as orm

from app import db, jobs
from app.models import Job, Project
from app.services import active, projects


@pytest.fixture
def sessions_made(monkeypatch):
    """Sessions constructed, per thread id."""
    made: dict[int, int] = {}
    init = orm.Session.__init__

    def counting(self, *args, **kwargs):
        made[threading.get_ident()] = made.get(threading.get_ident(), 0) + 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(orm.Session, "__init__", counting)
    return made


@pytest.fixture
def big_volume(config, project) -> dict:
    raw = (np.random.default_rng(0).random((4, 160, 160)) * 255).astype(np.uint8)
    return projects.add_volume_from_array(config, project["id"], "v", raw)


def test_a_suggestion_job_uses_one_session(config, project, big_volume, sessions_made):
    suggest = partial(active.suggest_patches, config, big_volume["id"], strategy="random", k=2, patch_size=64)
    active.suggest_patches(config, big_volume["id"], strategy="random", k=2, patch_size=64)
    without = sessions_made.pop(threading.get_ident())
    outcome = jobs.run_job(config, "suggest", project["id"], suggest)
    assert outcome.ok, outcome.error
    assert without >= 6, f"the service alone should open a session per helper ({without}): the test would mean nothing"
    assert sessions_made[threading.get_ident()] == 1, sessions_made


def test_a_request_uses_one_session(config, volume, client, sessions_made):
    for url in (f"/tiles/{volume['id']}/xy/1.png?lo=0&hi=255", f"/overlay/{volume['id']}/labels/xy/1.png"):
        sessions_made.clear()
        assert client.get(url).status_code == 200
        assert sum(sessions_made.values()) == 1, (url, sessions_made)


def test_each_transaction_of_a_job_commits_and_the_next_reads_fresh_rows(config, project):
    """A job's transactions must not hold SQLite's write lock across its computing, and must see what
    other threads and processes wrote meanwhile (a cancel flag, a renamed project)."""
    seen: dict = {}

    def body(progress=None, cancel=None):
        job_id = jobs.latest_job(config, "train", project["id"])["id"]
        with db.session_scope(config) as s:
            held = s.get(Project, project["id"])        # still referenced below: it stays in memory
        seen["before"] = held.name

        def elsewhere():   # another thread: no context, its own session; must neither wait nor fail
            with db.session_scope(config) as s:
                s.get(Project, project["id"]).name = "renamed"
            jobs.request_cancel(config, job_id)

        t = threading.Thread(target=elsewhere)
        t.start()
        t.join(10)
        seen["writer_done"] = not t.is_alive()
        with db.session_scope(config) as s:
            seen["after"] = s.get(Project, project["id"]).name
        assert held is not None
        seen["cancel"] = jobs.cancel_requested(config, job_id)
        return {}

    assert jobs.run_job(config, "train", project["id"], body).ok
    assert seen == {"before": "test project", "writer_done": True, "after": "renamed", "cancel": True}


def test_nested_scopes_join_one_transaction(config, project):
    with db.service_context(config):
        with pytest.raises(RuntimeError):
            with db.session_scope(config) as outer:
                outer.get(Project, project["id"]).name = "half-done"
                with db.session_scope(config) as inner:
                    assert inner is outer
                    inner.add(Job(kind="train", project_id=project["id"], status="queued"))
                raise RuntimeError("the outer scope fails after the inner one ended")
    with db.session_scope(config) as s:     # both changes rolled back together
        assert s.get(Project, project["id"]).name == "test project"
        assert s.query(Job).count() == 0


def test_another_thread_is_not_served_by_the_context(config, project):
    with db.service_context(config) as ctx:
        with db.session_scope(config) as mine:
            pass
        theirs = {}

        def other():
            with db.session_scope(config) as s:
                theirs["session"] = s

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        assert ctx.serves(config) and theirs["session"] is not mine
