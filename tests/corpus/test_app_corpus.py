"""The corpus through the app: every bad input is one message in the Data panel, and the workspace
(database rows, label stores, stored volumes, uploads) is exactly as it was before.

Volumes are added through the Data panel's own callback logic (``callbacks.data.volumes_view``:
by path and by upload); settings through ``Config.from_env`` as ``python -m app`` reads them.
"""
from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from app import db
from app.config import Config
from app.services import projects
from app.workspace import Workspace
from callbacks.data import volumes_view
from layouts import ids
from tests.corpus.bad_inputs import SETTINGS, VOLUMES, _good

FILE_VOLUMES = sorted(n for n in VOLUMES if n not in ("mismatched_slices", "empty_folder", "folder_of_one_non_image",
                                                      "zarr_without_metadata", "zarr_group_without_array",
                                                      "missing_path"))


@pytest.fixture
def ws(tmp_path):
    """A workspace with a project holding one good volume and a stroke (so there is something to lose)."""
    data = tmp_path / "data"
    data.mkdir()
    config = Config(workspace=tmp_path / "ws", data_roots=(data,), demo="none", max_upload_mb=1)
    pid = projects.create_project(config, "p")["id"]
    vid = projects.add_volume_from_path(config, pid, str(_good(data)))["id"]
    mask = np.zeros((32, 32), bool)
    mask[4:9, 4:20] = True
    projects.label_store(config, vid).paint(1, mask, 1)
    yield config, pid, vid, data
    db.forget_all()
    projects.forget_caches()


def snapshot(config: Config) -> dict:
    """Every row of every table, and every file of the workspace but the SQLite files themselves."""
    path = Workspace(config.workspace).db_path
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    files = {}
    for p in sorted(Path(config.workspace).rglob("*")):
        if p.is_file() and not p.name.startswith(path.name):
            files[str(p.relative_to(config.workspace))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return {"rows": rows, "files": files}


def _refused(config, pid, vid, trigger, path=None, contents=None, filenames=None) -> str:
    before = snapshot(config)
    _opts, selected, text, is_open, colour = volumes_view(config, trigger, pid, path, None, contents, filenames, vid)
    assert is_open and colour == "danger" and selected == vid, (text, colour)
    assert "\n" not in text and "Traceback" not in text and 10 < len(text) < 600, text
    after = snapshot(config)
    assert after["rows"] == before["rows"], "a database row changed although the input was refused"
    assert after["files"] == before["files"], sorted(set(after["files"]) ^ set(before["files"]))
    return text


@pytest.mark.parametrize("name", sorted(VOLUMES))
def test_adding_a_bad_volume_by_path_changes_nothing(name, ws):
    config, pid, vid, data = ws
    bad = VOLUMES[name](data)
    _refused(config, pid, vid, ids.VOLUME_ADD, path=str(bad.relative_to(data)))


@pytest.mark.parametrize("name", FILE_VOLUMES)
def test_uploading_a_bad_volume_changes_nothing(name, ws, tmp_path):
    config, pid, vid, _ = ws
    outside = tmp_path / "outside"
    outside.mkdir()
    bad = VOLUMES[name](outside)
    url = "data:application/octet-stream;base64," + base64.b64encode(bad.read_bytes()).decode()
    _refused(config, pid, vid, ids.VOLUME_UPLOAD, contents=[url], filenames=[bad.name])


def test_paths_out_of_the_data_roots_change_nothing(ws, tmp_path):
    config, pid, vid, data = ws
    secret = _good(tmp_path)                          # a readable volume, but outside every data root
    os.symlink(secret, data / "link.tif")
    for path in ("../good.tif", str(secret), "link.tif"):
        text = _refused(config, pid, vid, ids.VOLUME_ADD, path=path)
        assert "data folder" in text or "outside" in text or "not allowed" in text, text


def test_an_upload_over_the_size_limit_changes_nothing(ws):
    config, pid, vid, _ = ws
    big = "data:application/octet-stream;base64," + base64.b64encode(os.urandom(2 * 2**20)).decode()
    assert "limited to 1 MB" in _refused(config, pid, vid, ids.VOLUME_UPLOAD, contents=[big], filenames=["big.tif"])


@pytest.mark.parametrize("key, value, words", SETTINGS)
def test_a_bad_setting_is_refused_naming_it(key, value, words, tmp_path):
    with pytest.raises(ValueError) as info:
        Config.from_env(env={"APP_WORKSPACE": str(tmp_path / "ws"), key: value})
    assert words in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert not (tmp_path / "ws").exists(), "a refused setting created the workspace"
