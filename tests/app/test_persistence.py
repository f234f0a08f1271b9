"""State survives a restart: a new engine on the same SQLite file sees every row and every label."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from app import db, jobs
from app.db import session_scope
from app.models import ALRound, Job, ModelVersion, Project, Segmentation, Suggestion, VolumeRecord
from app.services import labels, projects
from app.workspace import Workspace


def restart(config) -> None:
    """Drop engines and caches, as a new server process would start without them."""
    db.forget_all()
    projects.forget_caches()


def test_everything_is_there_after_restart(config, project, volume):
    ws = Workspace(config.workspace)
    with session_scope(config) as s:
        m = ModelVersion(project_id=project["id"], path=str(ws.model_path(1)), n_labeled_pixels=12, active=True,
                         metrics_json='{"iou": 0.5}')
        s.add(m)
        s.flush()
        r = ALRound(project_id=project["id"], volume_id=volume["id"], model_id=m.id, strategy="entropy", k=2,
                    patch_size=16)
        s.add(r)
        s.flush()
        s.add(Suggestion(round_id=r.id, rank=0, z=1, y=0, x=0, size=16, score=0.9))
        s.add(Segmentation(volume_id=volume["id"], model_id=m.id, params_json='{"threshold": 0.5}'))
    jid = jobs.create_job(config, "train", project["id"], params={"steps": 3})
    jobs.set_state(config, jid, "failed", error="boom: out of memory")
    labels.apply_stroke(config, volume["id"], 1, "M2,3L10,3", value=2, width=1)
    projects.set_voxel_size(config, volume["id"], (30, 4, 4))
    projects.add_class(config, volume["id"], "membrane", "#00ff00")

    restart(config)

    assert [p["name"] for p in projects.list_projects(config)] == ["test project"]
    v = projects.list_volumes(config, project["id"])[0]
    assert v["shape"] == [4, 48, 64] and v["voxel_size"] == [30.0, 4.0, 4.0] and v["gt_path"]
    assert [c["name"] for c in projects.get_classes(config, v["id"])] == ["background", "mitochondria", "membrane"]
    store = projects.label_store(config, v["id"])
    assert store.read_slice(1)[3, 2:11].tolist() == [2] * 9
    with session_scope(config) as s:
        assert s.query(ModelVersion).one().metrics_json == '{"iou": 0.5}'
        assert s.query(ALRound).one().strategy == "entropy"
        sug = s.query(Suggestion).one()
        assert (sug.z, sug.size, sug.status, sug.n_strokes) == (1, 16, "labeled", 1)   # the stroke was inside it
        assert s.query(Segmentation).count() == 1
    job = jobs.get_job(config, jid)
    assert job["status"] == "failed" and job["error"] == "boom: out of memory" and job["params"] == {"steps": 3}
    np.testing.assert_array_equal(projects.open_volume(config, v["id"])[2], volume_array(config, v["id"]))


def volume_array(config, vid):
    import zarr

    return zarr.open_array(projects.volume_info(config, vid)["stored_path"], mode="r")[2]


def test_sqlite_file_uses_wal_and_foreign_keys(config, project):
    path = Workspace(config.workspace).db_path
    assert path.exists()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    with session_scope(config) as s:
        assert s.connection().exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_ids_are_never_reused(config):
    a = projects.create_project(config, "a")
    with session_scope(config) as s:
        s.delete(s.get(Project, a["id"]))
    b = projects.create_project(config, "b")
    assert b["id"] > a["id"]


def test_deleting_a_project_removes_its_rows(config, project, volume):
    jid = jobs.create_job(config, "export", project["id"])
    with session_scope(config) as s:
        s.delete(s.get(Project, project["id"]))
    with session_scope(config) as s:
        assert s.query(VolumeRecord).count() == 0 and s.get(Job, jid) is None


def test_stale_running_job_becomes_failed_after_restart(config, project):
    jid = jobs.create_job(config, "train", project["id"])
    with session_scope(config) as s:
        j = s.get(Job, jid)
        j.status, j.pid = "running", 2**22 + 12345   # a pid that does not exist
    restart(config)
    from app.server import create_app

    create_app(config)   # startup reconciles
    job = jobs.get_job(config, jid)
    assert job["status"] == "failed" and "stopped" in job["error"] and job["finished"]


def test_demo_is_created_once_with_ground_truth(config):
    from app.demo import DEMO_PROJECT, ensure_demo

    cfg = config.with_(demo_shape=(2, 64, 64))
    proj = ensure_demo(cfg, "synthetic")
    again = ensure_demo(cfg, "synthetic")
    assert proj == again and [p["name"] for p in projects.list_projects(cfg)] == [DEMO_PROJECT]
    (vol,) = projects.list_volumes(cfg, proj["id"])
    assert vol["shape"] == [2, 64, 64] and vol["voxel_size"] == [40.0, 5.0, 5.0]
    gt = projects.open_ground_truth(cfg, vol["id"])
    assert gt.shape == (2, 64, 64) and set(np.unique(gt[:])) <= {0, 1} and gt[:].any()
    assert ensure_demo(cfg, "none") is None


def test_demo_from_a_path_with_ground_truth(config, raw):
    pytest.importorskip("ml.io.readers")
    import tifffile

    from app.demo import ensure_demo

    root = config.data_roots[0]
    tifffile.imwrite(root / "raw.tif", raw, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(root / "gt.tif", (raw > 100).astype(np.uint8) * 255, imagej=True, metadata={"axes": "ZYX"})
    proj = ensure_demo(config, str(root / "raw.tif"), str(root / "gt.tif"))
    (vol,) = projects.list_volumes(config, proj["id"])
    np.testing.assert_array_equal(projects.open_ground_truth(config, vol["id"])[1], (raw[1] > 100).astype(np.uint8))


def test_a_workspace_of_an_older_version_gets_the_new_columns(tmp_path):
    """A project table without ``owner_id`` (before the shared mode) is brought up to date, rows kept."""
    from app.db import Database

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE project (id INTEGER PRIMARY KEY AUTOINCREMENT, created DATETIME, name VARCHAR(200) UNIQUE)")
        conn.execute("INSERT INTO project (name) VALUES ('kept')")
    db = Database(path)
    with db.session() as s:
        row = s.query(Project).one()
        assert (row.name, row.owner_id) == ("kept", None)
    db.dispose()
