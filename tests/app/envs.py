"""Test environments for the service and callback tests: a project with one stored volume,
plus the rows later steps leave behind (a model version, a segmentation).

Plain functions (not fixtures) so module-scoped fixtures can build one in their own folder.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from app.config import Config
from app.db import session_scope
from app.models import ModelVersion, Segmentation, dumps
from app.services import projects
from app.workspace import Workspace

#: a 4-channel, 2-level U-Net trained on 32-px crops: seconds per training on one CPU thread
TINY = {"model": {"base": 4, "depth": 2}, "train": {"crop": 32, "batch_size": 2, "eval_every": 5}}


def make_env(workspace: Path, raw: np.ndarray, gt: np.ndarray | None = None, name: str = "syn",
             voxel_size: tuple = (40, 5, 5), extra: dict | None = None) -> SimpleNamespace:
    """Config (CPU, ``extra`` knobs, default TINY) + project "p" + volume ``raw`` (ground truth ``gt``).

    Fields: config, pid, vol (volume_info dict), vid, raw, gt, store (the volume's LabelStore).
    """
    cfg = Config(workspace=workspace, demo="none", device="cpu", extra=TINY if extra is None else extra)
    pid = projects.create_project(cfg, "p")["id"]
    vol = projects.add_volume_from_array(cfg, pid, name, raw, voxel_size=voxel_size, ground_truth=gt)
    return SimpleNamespace(config=cfg, pid=pid, vol=vol, vid=vol["id"], raw=raw, gt=gt,
                           store=projects.label_store(cfg, vol["id"]))


def synthetic_env(workspace: Path, shape: tuple[int, int, int], seed: int, **kwargs) -> SimpleNamespace:
    """:func:`make_env` on a synthetic EM volume with its mitochondria mask as ground truth."""
    from ml.synthetic import make_em_volume

    raw, gt = make_em_volume(shape, seed=seed)
    return make_env(workspace, raw, gt, **kwargs)


def paint_ground_truth(env: SimpleNamespace, zs, size: int) -> None:
    """Label the top-left ``size`` x ``size`` corner of slices ``zs`` densely from the ground truth."""
    for z in zs:
        g = env.gt[z, :size, :size]
        env.store.paint(z, g == 0, 1)
        env.store.paint(z, g > 0, 2)


def add_model_version(env: SimpleNamespace, write: Callable[[Path], Any], active: bool = True) -> int:
    """Register a ModelVersion row; ``write(path)`` puts its checkpoint at the workspace's model path."""
    with session_scope(env.config) as s:
        row = ModelVersion(project_id=env.pid, path="", active=active)
        s.add(row)
        s.flush()
        path = Workspace(env.config.workspace).model_path(row.id)
        write(path)
        row.path = str(path)
        return int(row.id)


def add_segmentation(env: SimpleNamespace, instances: np.ndarray, summary: dict,
                     voxel_size: tuple = (40, 5, 5)) -> int:
    """A stored segmentation of the env's volume: instance labels + object table, as post-processing writes."""
    from ml.objects import object_table

    ws = Workspace(env.config.workspace)
    with session_scope(env.config) as s:
        row = Segmentation(volume_id=env.vid, summary_json=dumps(summary))
        s.add(row)
        s.flush()
        row.instances_path = str(projects.write_zarr(ws.instances_path(row.id), instances))
        row.table_path = str(ws.segmentation_dir(row.id) / "objects.csv")
        object_table(instances, voxel_size).to_csv(row.table_path, index=False)
        return int(row.id)


def sign_in(client: Any, name: str, password: str, next_url: str = "/") -> Any:
    """Sign in through the real login form (its CSRF token included); returns the POST's response."""
    import re

    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"name": name, "password": password, "csrf": csrf, "next": next_url})
