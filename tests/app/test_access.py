"""Per-user projects (shared mode): a user sees their own, shared and ownerless projects only.

Ann owns a project with a volume, labels, a model version and a job; Bob tries to reach them
by guessing ids, through the services (as a callback would) and over HTTP (as a browser or a
script would). Then Ann shares it read-only, then with edit rights.
"""
from __future__ import annotations

import numpy as np
import pytest

from app import jobs
from app.access import Forbidden, acting_as
from app.errors import NotFound
from app.services import labels, projects, sharing, training, users
from tests.app.envs import add_model_version, sign_in

SECRET = "0123456789abcdef-test-secret"
STROKE = "M5,5L20,5"


@pytest.fixture
def world(config, raw):
    shared = config.with_(auth_enabled=True, secret_key=SECRET)
    ann = users.add_user(shared, "ann", "ann-password")
    bob = users.add_user(shared, "bob", "bob-password")
    demo = projects.create_project(shared, "demo (single-user)")          # no account: ownerless
    with acting_as(ann):
        pid = projects.create_project(shared, "ann's mitochondria")["id"]
        vol = projects.add_volume_from_array(shared, pid, "vol", raw, voxel_size=(40, 5, 5))
        labels.apply_stroke(shared, vol["id"], 1, STROKE, 1, 3)
        job = jobs.create_job(shared, "train", pid)
    env = type("W", (), {})()
    env.__dict__.update(config=shared, ann=ann, bob=bob, pid=pid, vid=vol["id"], job=job, demo=demo["id"])
    from types import SimpleNamespace

    env.mid = add_model_version(SimpleNamespace(config=shared, pid=pid), lambda p: p.write_bytes(b"x"))
    return env


def _labeled(w) -> int:
    return int(np.count_nonzero(projects.label_store(w.config, w.vid).read_slice(1)))


def test_a_user_cannot_reach_another_users_project_by_guessing_ids(world):
    w = world
    with acting_as(w.bob):
        assert [p["name"] for p in projects.list_projects(w.config)] == ["demo (single-user)"]
        with pytest.raises(NotFound):
            projects.volume_info(w.config, w.vid)
        with pytest.raises(NotFound):
            projects.label_store(w.config, w.vid)
        with pytest.raises(NotFound):
            labels.apply_stroke(w.config, w.vid, 2, STROKE, 1, 3)
        with pytest.raises(NotFound):
            training.activate_model(w.config, w.pid, w.mid)
        assert training.list_versions(w.config, w.pid) == []
        assert jobs.get_job(w.config, w.job) is None and jobs.list_jobs(w.config) == []
        with pytest.raises(NotFound):
            jobs.create_job(w.config, "segment", w.pid)     # a job for a project Bob cannot see
        with pytest.raises(NotFound):
            users_share_as_bob(w)
    with acting_as(w.ann):
        assert _labeled(w) > 0 and len(training.list_versions(w.config, w.pid)) == 1


def users_share_as_bob(w) -> None:
    from app.db import session_scope
    from app.models import ProjectShare

    with session_scope(w.config) as s:
        s.add(ProjectShare(project_id=w.pid, user_id=w.bob.id, can_edit=True))


def test_a_read_only_share_shows_but_changes_nothing(world):
    w = world
    sharing.share(w.config, "ann's mitochondria", "bob", edit=False)
    with acting_as(w.ann):
        before = _labeled(w)
    with acting_as(w.bob):
        assert projects.volume_info(w.config, w.vid)["name"] == "vol"
        assert len(training.list_versions(w.config, w.pid)) == 1
        with pytest.raises(Forbidden, match="read-only"):
            labels.apply_stroke(w.config, w.vid, 2, STROKE, 1, 3)
        with pytest.raises(Forbidden):
            labels.undo(w.config, w.vid)
        with pytest.raises(Forbidden):
            jobs.create_job(w.config, "train", w.pid)
        with pytest.raises(Forbidden):
            projects.add_class(w.config, w.vid, "synapse")
        assert _labeled(w) == before
    sharing.share(w.config, "ann's mitochondria", "bob", edit=True)
    with acting_as(w.bob):
        labels.apply_stroke(w.config, w.vid, 2, STROKE, 1, 3)
        with pytest.raises(Forbidden, match="owner"):
            projects_rename(w, "bob's now")


def projects_rename(w, name: str) -> None:
    from app.db import session_scope
    from app.models import Project

    with session_scope(w.config) as s:
        s.get(Project, w.pid).name = name


def test_new_projects_belong_to_their_maker_and_ownerless_ones_to_everybody(world):
    w = world
    with acting_as(w.bob):
        mine = projects.create_project(w.config, "bob's synapses")["id"]
        assert {p["name"] for p in projects.list_projects(w.config)} == {"bob's synapses", "demo (single-user)"}
        projects.add_volume_from_array(w.config, w.demo, "shared demo volume", np.zeros((2, 32, 32), np.uint8))
    with acting_as(w.ann):
        assert mine not in [p["id"] for p in projects.list_projects(w.config)]
        assert [v["name"] for v in projects.list_volumes(w.config, w.demo)] == ["shared demo volume"]
    assert sharing.owned_projects(w.config, "bob") == ["bob's synapses"]


def test_removing_a_user_never_orphans_their_projects(world):
    w = world
    with pytest.raises(Exception, match="give them to another user"):
        users.remove_user(w.config, "ann")
    users.remove_user(w.config, "ann", give_to="bob")
    with acting_as(w.bob):
        assert projects.volume_info(w.config, w.vid)["name"] == "vol"


def test_routes_answer_404_for_another_users_volume(world):
    from app.server import create_app

    w = world
    client = create_app(w.config).server.test_client()
    sign_in(client, "ann", "ann-password")
    assert client.get(f"/tiles/{w.vid}/xy/1.png").status_code == 200     # cached now for the process
    client.get("/logout")
    sign_in(client, "bob", "bob-password")
    for url in (f"/tiles/{w.vid}/xy/1.png", f"/overlay/{w.vid}/labels/xy/1.png",
                f"/objects/{w.vid}/xy/1/at?r=1&c=1"):
        resp = client.get(url)
        assert resp.status_code == 404, f"{url}: {resp.status_code}"


def test_a_dash_callback_naming_another_users_volume_is_refused_before_it_runs(world):
    from app.server import create_app
    from layouts import ids

    w = world
    client = create_app(w.config).server.test_client()
    sign_in(client, "bob", "bob-password")

    def call(volume_id):
        body = {"output": "x.children", "outputs": {"id": "x", "property": "children"},
                "inputs": [{"id": ids.VOLUME_SELECT, "property": "value", "value": volume_id}],
                "changedPropIds": [f"{ids.VOLUME_SELECT}.value"], "state": []}
        return client.post("/_dash-update-component", json=body)

    assert call(w.vid).status_code == 404
    for cid, value in ((ids.PROJECT_STORE, w.pid), (ids.VOLUME_STORE, {"id": w.vid, "shape": [4, 48, 64]}),
                       (ids.VIEW_STATE, {"vid": w.vid, "plane": "xy", "index": 1})):
        body = {"output": "x.children", "outputs": {"id": "x", "property": "children"},
                "inputs": [{"id": "jobs-poll", "property": "n_intervals", "value": 1}],
                "state": [{"id": cid, "property": "data", "value": value}], "changedPropIds": []}
        assert client.post("/_dash-update-component", json=body).status_code == 404, cid
    with acting_as(w.bob):
        mine = projects.add_volume_from_array(w.config, w.demo, "bob's", np.zeros((2, 32, 32), np.uint8))["id"]
    assert call(mine).status_code != 404, "a volume the user may see was refused"
    # pattern-matching ids (the class editor's, the suggestion cards') are dicts: they name nothing
    body = {"output": "x.children", "outputs": {"id": "x", "property": "children"},
            "inputs": [[{"id": {"type": ids.CLASS_NAME_TYPE, "index": 3}, "property": "n_clicks", "value": 1}]],
            "state": [{"id": ids.VOLUME_SELECT, "property": "value", "value": mine}], "changedPropIds": []}
    assert client.post("/_dash-update-component", json=body).status_code != 404


def test_the_owner_shares_from_the_data_panel_and_nobody_else_can(world, config):
    from callbacks.data import sharing_view
    from layouts import ids

    w = world
    with acting_as(w.ann):
        hidden, text, alert, is_open, colour = sharing_view(w.config, ids.SHARE_ADD, w.pid, "bob", True)
        assert not hidden and (alert, colour) == ("Shared with bob (may edit).", "success")
        assert text == "owner ann · shared with bob (edit)"
        assert sharing_view(w.config, ids.SHARE_ADD, w.pid, "nobody", False)[2] == "no user named 'nobody'"
    with acting_as(w.bob):
        _, text, alert, is_open, colour = sharing_view(w.config, ids.SHARE_REMOVE, w.pid, "bob", False)
        assert is_open and colour == "danger" and "only the project's owner" in alert
        assert text == "owner ann · shared with bob (edit)"                 # nothing changed
    assert sharing_view(config, None, w.pid, None, False)[0] is True, "single-user mode shows sharing"
