"""Bad settings and bad data are answered with one clear message, never a traceback or a database error.

``python -m app`` runs as a subprocess only for settings refused before torch is imported (a second
each); the range checks of APP_MODEL / APP_TRAIN / APP_LIVE run in-process through ``Config.from_env``.
"""
from __future__ import annotations

import base64
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from app.config import REPO_ROOT, Config
from app.services import projects


def _start(tmp_path, **env) -> subprocess.CompletedProcess:
    """``python -m app`` with only these APP_* variables (a workspace of its own); killed after 60 s."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    return subprocess.run([sys.executable, "-m", "app", "--port", "0"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env={**clean, "APP_WORKSPACE": str(tmp_path / "ws"), **env})


@pytest.mark.parametrize("env, names", [({"APP_MODEL": "{base: 8}", "APP_DEMO": "none"}, ["APP_MODEL", "JSON"]),
                                        ({"APP_DEMO_SHAPE": "1,1,1"}, ["APP_DEMO_SHAPE", ">= 16"]),
                                        ({"APP_DEMO_SHAPE": "16,512"}, ["APP_DEMO_SHAPE", "three integers"]),
                                        ({"APP_AUTH": "1", "APP_DEMO": "none"}, ["APP_SECRET_KEY"]),
                                        ({"APP_AUTH": "1", "APP_SECRET_KEY": "short", "APP_DEMO": "none"},
                                         ["at least 16"])])
def test_start_with_a_bad_setting_is_one_line_and_exit_code_2(tmp_path, env, names):
    done = _start(tmp_path, **env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert all(n in done.stderr for n in names), done.stderr


def test_celery_web_refuses_command_line_settings_its_workers_cannot_see(tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    done = subprocess.run([sys.executable, "-m", "app", "--port", "0", "--workspace", str(tmp_path / "elsewhere")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={**clean, "APP_WORKSPACE": str(tmp_path / "ws"), "APP_JOB_BACKEND": "celery"})
    assert done.returncode == 2 and "APP_WORKSPACE" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_start_with_a_missing_demo_volume_is_one_line(tmp_path, capsys):
    from app.__main__ import main

    with pytest.raises(SystemExit) as stop:
        main(["--port", "0", "--workspace", str(tmp_path / "ws"), "--demo", str(tmp_path / "nowhere.tif")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "APP_DEMO" in err and "nowhere.tif does not exist" in err


@pytest.mark.parametrize("key, value, match", [
    ("APP_MODEL", '{"depth": 0}', r"APP_MODEL: depth=0 .*integer >= 1"),
    ("APP_MODEL", '{"dropout": 1.5}', r"APP_MODEL: dropout=1.5 .*\[0, 1\)"),
    ("APP_MODEL", '{"norm": "instance"}', r"APP_MODEL: norm='instance' .*'batch'"),
    ("APP_MODEL", '{"n_classes": 3}', r"APP_MODEL: unknown setting.*'n_classes'.*known: \['base', 'depth'"),
    ("APP_MODEL", '{"in_channels": 3}', r"APP_MODEL: unknown setting.*'in_channels'.*'z_radius'"),
    ("APP_MODEL", '{"z_radius": -1}', r"APP_MODEL: z_radius=-1 .*integer >= 0"),
    ("APP_TRAIN", '{"crop": -5}', r"APP_TRAIN: crop=-5 .*integer >= 16"),
    ("APP_TRAIN", '{"steps": 0}', r"APP_TRAIN: steps=0 .*integer >= 1"),
    ("APP_TRAIN", '{"lr": 0}', r"APP_TRAIN: lr=0 .*number > 0"),
    ("APP_TRAIN", '{"batch_size": 2.5}', r"APP_TRAIN: batch_size=2.5 .*integer >= 1"),
    ("APP_TRAIN", '{"amp": "yes"}', r"APP_TRAIN: amp='yes' .*true or false"),
    ("APP_TRAIN", '{"class_weights": [1, -1]}', r"APP_TRAIN: class_weights=\[1, -1\] .*positive numbers"),
    ("APP_TRAIN", '{"cropp": 64}', r"APP_TRAIN: unknown setting.*'cropp'.*'crop'"),
    ("APP_PRETRAIN", '{"steps": 0}', r"APP_PRETRAIN: steps=0 .*integer >= 1"),
    ("APP_PRETRAIN", '{"mask_ratio": 1}', r"APP_PRETRAIN: mask_ratio=1 .*\(0, 1\)"),
    ("APP_PRETRAIN", '{"stepz": 3}', r"APP_PRETRAIN: unknown setting.*'stepz'"),
    ("APP_LIVE", '{"focus": 2}', r"APP_LIVE: focus=2 .*\[0, 1\]"),
    ("APP_LIVE", '{"max_view": 10}', r"APP_LIVE: max_view=10 .*integer >= 64"),
    ("APP_SELF_TRAIN", '{"fg": 0.2}', r"APP_SELF_TRAIN: fg=0.2 .*\[0.5, 1\)"),
    ("APP_SELF_TRAIN", '{"enabled": "no"}', r"APP_SELF_TRAIN: enabled='no' .*true or false"),
    ("APP_SELF_TRAIN", '{"treshold": 0.9}', r"APP_SELF_TRAIN: unknown setting.*'treshold'"),
    ("APP_DEMO_SHAPE", "16,15,512", r"APP_DEMO_SHAPE='16,15,512'.*Y, X >= 16"),
])
def test_bad_ml_settings_name_the_key_and_the_range_at_load(tmp_path, key, value, match):
    with pytest.raises(ValueError, match=match) as err:
        Config.from_env(env={"APP_WORKSPACE": str(tmp_path), key: value})
    assert "Config(" not in str(err.value)           # no dump of the whole config


def test_good_ml_settings_are_kept(tmp_path):
    env = {"APP_WORKSPACE": str(tmp_path), "APP_MODEL": '{"base": 4, "depth": 2, "norm": "pixel", "z_radius": 1}',
           "APP_TRAIN": '{"crop": 32, "batch_size": 2, "class_weights": "auto", "ema": 0}',
           "APP_LIVE": '{"steps": 0}', "APP_DEMO_SHAPE": "1,16,16"}
    c = Config.from_env(env=env)
    assert c.extra["train"]["crop"] == 32 and c.extra["live"] == {"steps": 0} and c.demo_shape == (1, 16, 16)
    from app.services.factory import architecture

    assert architecture(c)["in_channels"] == 3 and "z_radius" not in architecture(c)


def test_ml_configs_refuse_bad_values_with_one_line():
    from ml.live import LiveConfig
    from ml.model import UNet2D
    from ml.synthetic import make_em_volume
    from ml.train import TrainConfig

    with pytest.raises(ValueError, match=r"^crop=-5 is not allowed: must be an integer >= 16$"):
        TrainConfig(crop=-5)
    with pytest.raises(ValueError, match=r"^base=0 .*integer >= 1$"):
        UNet2D(base=0)
    with pytest.raises(ValueError, match=r"^lr=-1 .*number > 0$"):
        LiveConfig(lr=-1)
    with pytest.raises(ValueError, match="Y, X >= 16"):
        make_em_volume((1, 1, 1))
    assert make_em_volume((1, 16, 16))[0].shape == (1, 16, 16)


# --- bad data: float volumes with NaN / inf ------------------------------------------------------------
def _float_volume() -> np.ndarray:
    a = np.random.default_rng(0).normal(100, 10, (5, 32, 32)).astype(np.float32)
    a[0, :4] = np.nan
    a[2, 5, 5] = np.inf
    a[3, 6, 6] = -np.inf
    return a


def _upload(config, pid, name, arr):
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    return projects.add_volume_from_upload(config, pid, name, "data:image/tiff;base64," +
                                           base64.b64encode(buf.getvalue()).decode())


@pytest.mark.parametrize("how", ["array", "path", "upload"])
def test_nan_voxels_are_left_out_of_the_window(config, project, how):
    a = _float_volume()
    if how == "array":
        rec = projects.add_volume_from_array(config, project["id"], "nan", a)
    elif how == "path":
        tifffile.imwrite(config.data_roots[0] / "nan.tif", a)
        rec = projects.add_volume_from_path(config, project["id"], "nan.tif")
    else:
        rec = _upload(config, project["id"], "nan.tif", a)
    lo, hi = np.percentile(a[np.isfinite(a)], [1.0, 99.5])
    assert rec["lo"] == pytest.approx(lo, rel=0.02) and rec["hi"] == pytest.approx(hi, rel=0.02)


def test_all_nan_volume_is_refused_with_a_message_and_constant_gets_a_window(config, project):
    from app.errors import user_message

    with pytest.raises(ValueError) as err:
        _upload(config, project["id"], "empty.tif", np.full((2, 16, 16), np.nan, np.float32))
    assert "finite" in user_message(err.value) and projects.list_volumes(config, project["id"]) == []
    rec = projects.add_volume_from_array(config, project["id"], "flat", np.full((2, 16, 16), 7.0, np.float32))
    assert (rec["lo"], rec["hi"]) == (7.0, 8.0)
