"""App fixtures: a fresh workspace + data root per test, a small stored volume, a Flask test client.

Every test starts with fresh engines and volume caches (as after a restart); service tests
build their synthetic project with ``tests.app.envs``.
"""
from __future__ import annotations

import numpy as np
import pytest

from app import db
from app.config import Config
from app.services import projects


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Each test sees its own engines and volume caches (as after a restart)."""
    yield
    db.forget_all()
    projects.forget_caches()


@pytest.fixture
def config(tmp_path) -> Config:
    (tmp_path / "data").mkdir()
    return Config(workspace=tmp_path / "ws", data_roots=(tmp_path / "data",), demo="none", max_upload_mb=1)


@pytest.fixture
def project(config) -> dict:
    return projects.create_project(config, "test project")


@pytest.fixture
def raw() -> np.ndarray:
    """(4, 48, 64) uint8 with every pixel distinct enough to check slicing and windowing."""
    z, y, x = np.meshgrid(np.arange(4), np.arange(48), np.arange(64), indexing="ij")
    return ((z * 50 + y * 3 + x) % 256).astype(np.uint8)


@pytest.fixture
def volume(config, project, raw) -> dict:
    return projects.add_volume_from_array(config, project["id"], "vol", raw, voxel_size=(40, 5, 5),
                                          ground_truth=(raw > 128).astype(np.uint8))


@pytest.fixture
def dash_app(config):
    from app.server import create_app

    return create_app(config)


@pytest.fixture
def client(dash_app):
    return dash_app.server.test_client()
