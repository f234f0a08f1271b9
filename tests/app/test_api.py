"""The REST API: the documented routes work on a real workspace, bad input gets one line, and in
shared mode a token opens exactly the caller's projects.

The segmentation / training jobs started here run in a real detached process
(``python -m app.background``), on a tiny model trained from painted ground truth.
"""
from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import pytest

from app.services import sharing, users
from tests.app.envs import paint_ground_truth, synthetic_env

SECRET = "0123456789abcdef-test-secret"


@pytest.fixture
def env(tmp_path):
    return synthetic_env(tmp_path / "ws", (3, 96, 96), seed=1)


@pytest.fixture
def client(env):
    from app.server import create_app

    return create_app(env.config).server.test_client()


def _wait_done(client, job_id: int, timeout: float = 240) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/api/jobs/{job_id}").get_json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_the_openapi_document_lists_every_api_route(client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["info"]["title"] == "ActiveSeg API" and doc["security"] == [{"bearer": []}]
    paths = set(doc["paths"])
    assert {"/api/projects", "/api/volumes/{vid}/strokes", "/api/volumes/{vid}/segment", "/api/jobs/{job_id}",
            "/api/jobs/{job_id}/cancel", "/api/volumes/{vid}/objects.csv", "/api/projects/{pid}/models"} <= paths
    assert not any(p.startswith("/_dash") for p in paths), "Dash's own routes leaked into the API document"
    stroke = doc["paths"]["/api/volumes/{vid}/strokes"]["post"]
    assert "requestBody" in stroke and "201" in stroke["responses"]
    routes = {r.rule for r in client.application.url_map.iter_rules() if r.rule.startswith("/api/")} - {"/api/openapi.json"}
    documented = {p.replace("{", "<").replace("}", ">") for p in paths}
    assert {r.replace("int:", "") for r in routes} == documented, "a route under /api is missing from the document"


def test_projects_volumes_strokes_and_counts(client, env):
    assert client.get("/api/projects").get_json() == [{"id": env.pid, "name": "p"}]
    made = client.post("/api/projects", json={"name": "second"})
    assert made.status_code == 201 and made.get_json()["name"] == "second"
    vols = client.get(f"/api/projects/{env.pid}/volumes").get_json()
    assert [v["id"] for v in vols] == [env.vid] and vols[0]["shape"] == [3, 96, 96]
    done = client.post(f"/api/volumes/{env.vid}/strokes", json={"z": 1, "path": "M5,5L40,5", "value": 1, "width": 3})
    assert done.status_code == 201 and done.get_json()["n_pixels"] > 0
    counts = {c["name"]: c["pixels"] for c in client.get(f"/api/volumes/{env.vid}/labels").get_json()}
    assert counts["background"] == done.get_json()["n_pixels"]
    events = client.get(f"/api/volumes/{env.vid}/labels/events").get_json()
    assert [(e["kind"], e["stroke_id"]) for e in events] == [("stroke", done.get_json()["stroke_id"])]
    assert client.get(f"/api/volumes/{env.vid}/suggestions").get_json() == []


def test_bad_input_gets_one_clear_answer(client, env):
    assert client.post("/api/projects", json={"name": ""}).status_code == 422
    bad = client.post(f"/api/volumes/{env.vid}/strokes", json={"z": 99, "path": "M5,5L40,5", "value": 1})
    assert bad.status_code == 400 and "outside" in bad.get_json()["error"]
    assert client.post(f"/api/volumes/{env.vid}/strokes", json={"z": 0, "path": "M5,5L40,5", "value": -1}).status_code == 422
    assert client.get("/api/volumes/999").status_code == 404 and "999" in client.get("/api/volumes/999").get_json()["error"]
    assert client.get("/api/jobs/999").status_code == 404
    assert client.post(f"/api/volumes/{env.vid}/segment", json={"threshold": 2}).status_code == 422
    none = client.get(f"/api/volumes/{env.vid}/objects.csv")
    assert none.status_code == 404 and "segment" in none.get_json()["error"]


def test_train_then_segment_then_download_the_object_table(client, env):
    paint_ground_truth(env, zs=range(3), size=64)
    trained = client.post(f"/api/projects/{env.pid}/train", json={"budget": None, "epochs": 1})
    assert trained.status_code == 202 and trained.get_json()["status"] in ("queued", "running")
    job = _wait_done(client, trained.get_json()["id"])
    assert job["status"] == "done", job
    models = client.get(f"/api/projects/{env.pid}/models").get_json()
    assert len(models) == 1 and models[0]["active"]
    bad = client.post(f"/api/volumes/{env.vid}/segment", json={"threshold": 0.5, "core_threshold": 1.5})
    assert bad.status_code == 422 and "core_threshold" in bad.get_data(as_text=True), bad.get_data(as_text=True)
    unit = client.post(f"/api/volumes/{env.vid}/segment", json={"min_size": 1, "min_size_unit": "nm3"})
    assert unit.status_code == 422 and "min_size_unit" in unit.get_data(as_text=True)
    part = client.post(f"/api/volumes/{env.vid}/segment", json={"min_size": 2.5})
    assert part.status_code == 422 and "whole number" in part.get_data(as_text=True), part.get_data(as_text=True)
    from app.services import projects
    bare = projects.add_volume_from_array(env.config, env.pid, "no voxel size", np.zeros((2, 32, 32), np.uint8))["id"]
    sized = client.post(f"/api/volumes/{bare}/segment", json={"min_size": 0.01, "min_size_unit": "um3"})
    assert sized.status_code == 400 and "needs the volume's voxel size" in sized.get_json()["error"], sized.get_json()
    assert not [j for j in client.get("/api/jobs").get_json() if j["kind"] == "segment"]     # no job was started
    started = client.post(f"/api/volumes/{env.vid}/segment", json={"threshold": 0.5, "min_size": 3e-6,
                                                                   "min_size_unit": "um3", "core_threshold": 0.55})
    job = _wait_done(client, started.get_json()["id"])
    assert job["status"] == "done" and job["kind"] == "segment", job
    # 3e-6 µm³ at the 40 x 5 x 5 nm voxels: 3 voxels, and the record keeps voxels
    assert job["result"]["settings"] == {"threshold": 0.5, "min_size": 3, "split": False, "core_threshold": 0.55}
    table = client.get(f"/api/volumes/{env.vid}/objects.csv")
    assert table.status_code == 200 and table.mimetype == "text/csv"
    frame = pd.read_csv(io.StringIO(table.get_data(as_text=True)))
    assert len(frame) == job["result"]["summary"]["count"]


def test_a_token_opens_only_the_callers_projects(env):
    from app.access import acting_as
    from app.server import create_app
    from app.services import projects

    shared = env.config.with_(auth_enabled=True, secret_key=SECRET)
    users.add_user(shared, "ann", "ann-password")
    bob = users.add_user(shared, "bob", "bob-password")
    with acting_as(bob):
        theirs = projects.create_project(shared, "bob's")["id"]
        vol = projects.add_volume_from_array(shared, theirs, "b", np.zeros((2, 32, 32), np.uint8))["id"]
    client = create_app(shared).server.test_client()
    assert client.get("/api/projects").status_code == 401
    ann = {"Authorization": f"Bearer {users.new_token(shared, 'ann')}"}
    assert theirs not in [p["id"] for p in client.get("/api/projects", headers=ann).get_json()]
    assert client.get(f"/api/volumes/{vol}", headers=ann).status_code == 404
    assert client.post(f"/api/volumes/{vol}/strokes", headers=ann,
                       json={"z": 0, "path": "M1,1L9,1", "value": 1}).status_code == 404
    assert client.post(f"/api/volumes/{vol}/segment", headers=ann, json={}).status_code == 404
    assert client.post(f"/api/projects/{theirs}/train", headers=ann, json={}).status_code == 404
    sharing.share(shared, "bob's", "ann", edit=False)
    assert client.get(f"/api/volumes/{vol}", headers=ann).status_code == 200
    refused = client.post(f"/api/volumes/{vol}/strokes", headers=ann, json={"z": 0, "path": "M1,1L9,1", "value": 1})
    assert refused.status_code == 403 and "read-only" in refused.get_json()["error"]
