"""Exports: every format written by the service reads back (ml.io readers; pynrrd for NRRD)."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import nrrd
import numpy as np
import pandas as pd
import pytest
import tifffile

from app.db import session_scope
from app.errors import UserError
from app.models import ALRound, Suggestion
from app.services import exports
from app.workspace import Workspace
from ml.checkpoint import load_checkpoint, save_checkpoint
from ml.io.readers import open_labels
from ml.model import UNet2D
from ml.progress import Cancelled
from tests.app.envs import add_model_version, add_segmentation, make_env

VOXEL = (40.0, 5.0, 5.0)


@pytest.fixture
def env(tmp_path):
    raw = np.random.default_rng(0).integers(0, 255, (3, 40, 48), dtype=np.uint8)
    env = make_env(tmp_path / "ws", raw, name="my vol", voxel_size=VOXEL, extra={})
    env.store.paint(1, np.ones((6, 8), bool), 2, y0=4, x0=4)
    env.store.paint(2, np.ones((3, 3), bool), 1, y0=30, x0=40)
    return env


@pytest.fixture
def segmented(env):
    """A stored segmentation with two objects (written as post-processing would)."""
    inst = np.zeros(env.raw.shape, np.int32)
    inst[0:2, 5:15, 5:15] = 1
    inst[1:3, 20:30, 30:44] = 2
    add_segmentation(env, inst, {"count": 2, "voxel_size_known": True}, VOXEL)
    env.instances = inst
    return env


def _export(env, what, fmt, **kw) -> Path:
    res = exports.export(env.config, env.vid, what, fmt, **kw)
    path = Path(res["path"])
    assert path.is_file() and path.name == res["filename"] and path.parent == Workspace(env.config.workspace).exports_dir()
    return path


def _unzip(path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(path) as zf:
        zf.extractall(dest)
    (root,) = list(dest.iterdir())
    return root


@pytest.mark.parametrize("what", ["segmentation", "instances"])
def test_volume_exports_round_trip_in_every_format(segmented, tmp_path, what):
    expected = segmented.instances if what == "instances" else (segmented.instances > 0).astype(np.uint8)
    tif = _export(segmented, what, "tiff")
    vol = open_labels(tif)
    assert np.array_equal(vol[:], expected) and vol.voxel_size == pytest.approx(VOXEL)
    data, header = nrrd.read(str(_export(segmented, what, "nrrd")), index_order="C")
    assert np.array_equal(data, expected)
    assert np.allclose(np.diag(header["space directions"]), VOXEL[::-1])
    root = _unzip(_export(segmented, what, "ome-zarr"), tmp_path / "unz")
    assert root.name.endswith(".ome.zarr")
    vol = open_labels(root)
    assert np.array_equal(vol[:], expected) and vol.voxel_size == pytest.approx(VOXEL)


def test_sparse_labels_export(env):
    vol = open_labels(_export(env, "labels", "tiff"))
    assert np.array_equal(vol[:], env.store.to_array())
    assert vol[:].max() == 2 and np.count_nonzero(vol[:]) == 6 * 8 + 9


def test_object_table_csv(segmented):
    table = pd.read_csv(_export(segmented, "objects", "csv"))
    assert list(table["id"]) == [1, 2]
    assert table.loc[0, "voxels"] == 200 and table.loc[0, "volume_um3"] == pytest.approx(200 * 40 * 5 * 5 / 1e9)


def test_patch_pairs_zip_from_labeled_suggestions_or_grid(env, tmp_path):
    root = _unzip(_export(env, "patches", "zip"), tmp_path / "grid")     # no AL yet: grid tiles with labels
    index = pd.read_csv(root / "patches.csv")
    assert len(index) == 2 and set(index["z"]) == {1, 2}
    mask = tifffile.imread(root / index.loc[0, "mask"])
    image = tifffile.imread(root / index.loc[0, "image"])
    z, y, x, s = (int(index.loc[0, k]) for k in ("z", "y", "x", "size"))
    assert np.array_equal(image, env.raw[z, y:y + s, x:x + s])
    assert np.array_equal(mask, env.store.read(z, y, y + s, x, x + s))
    with session_scope(env.config) as s:      # with labeled suggestions, exactly those patches go out
        rnd = ALRound(project_id=env.pid, volume_id=env.vid, strategy="random", k=1, patch_size=16)
        s.add(rnd)
        s.flush()
        s.add(Suggestion(round_id=rnd.id, rank=1, z=1, y=0, x=0, size=16, status="labeled"))
    index = pd.read_csv(_unzip(_export(env, "patches", "zip"), tmp_path / "al") / "patches.csv")
    assert index[["z", "y", "x", "size"]].values.tolist() == [[1, 0, 0, 16]]


def test_checkpoint_and_effort_exports(env):
    with pytest.raises(UserError, match="No trained model"):
        exports.export(env.config, env.vid, "checkpoint", "pt")
    add_model_version(env, lambda path: save_checkpoint(path, UNet2D(base=4, depth=2), ["background", "mito"]))
    model, info = load_checkpoint(_export(env, "checkpoint", "pt"))
    assert model.config["base"] == 4 and info["classes"] == ["background", "mito"]
    text = _export(env, "effort", "csv").read_text()
    assert text.startswith("suggestion_id,")


def test_export_names_are_readable_but_not_guessable(env):
    first, second = _export(env, "labels", "tiff").name, _export(env, "labels", "tiff").name
    assert re.fullmatch(r"my_vol_labels_\d{8}-\d{6}_[A-Za-z0-9_-]{16}\.tif", first), first
    assert first != second            # the same export twice (even within a second): two names
    assert exports.resolve_export(env.config, first).name == first


def test_refusals_and_cancel_leave_nothing_behind(env):
    with pytest.raises(UserError, match="No segmentation"):
        exports.export(env.config, env.vid, "instances", "tiff")
    with pytest.raises(UserError, match="can be exported as"):
        exports.export(env.config, env.vid, "objects", "tiff")
    with pytest.raises(UserError, match="Unknown export"):
        exports.export(env.config, env.vid, "everything", "zip")
    with pytest.raises(Cancelled):
        exports.export(env.config, env.vid, "labels", "ome-zarr", cancel=lambda: True)
    assert list(Workspace(env.config.workspace).exports_dir().iterdir()) == []
    with pytest.raises(UserError):
        exports.resolve_export(env.config, "../activeseg.sqlite")
