"""Config from the environment: defaults, parsing, validation, round trip."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import Config


def test_defaults_point_into_workspace(tmp_path):
    c = Config.from_env(env={}, workspace=tmp_path / "w")
    assert c.workspace == (tmp_path / "w").resolve()
    assert c.data_roots[0] == c.workspace / "data"
    assert c.job_backend == "diskcache" and c.max_upload_mb == 2048 and c.device == "auto"
    assert c.device_preference is None


def test_env_variables_are_parsed(tmp_path):
    env = {"APP_WORKSPACE": str(tmp_path / "a"), "APP_DATA_ROOTS": os.pathsep.join([str(tmp_path / "r1"), str(tmp_path / "r2")]),
           "APP_JOB_BACKEND": "celery", "REDIS_URL": "redis://h:1/2", "APP_MAX_UPLOAD_MB": "7", "APP_DEVICE": "cpu",
           "APP_TORCH_THREADS": "3", "APP_AUTH": "yes", "APP_DEMO": "none",
           "APP_SECRET_KEY": "s" * 16, "APP_SECURE_COOKIES": "on", "APP_Z_CONSENSUS": "0.1"}
    c = Config.from_env(env=env)
    assert c.workspace == (tmp_path / "a").resolve()
    assert c.data_roots == ((tmp_path / "r1").resolve(), (tmp_path / "r2").resolve())
    assert (c.job_backend, c.redis_url, c.max_upload_bytes, c.device_preference, c.torch_threads, c.auth_enabled,
            c.demo, c.secure_cookies, c.z_consensus) == ("celery", "redis://h:1/2", 7 * 2**20, "cpu", 3, True, "none",
                                                         True, 0.1)
    assert Config.from_env(env=c.to_env()) == c, "the environment a worker gets does not rebuild the config"


def test_overrides_win_over_env(tmp_path):
    c = Config.from_env(env={"APP_WORKSPACE": "/nope", "APP_DEMO": "synthetic"}, workspace=tmp_path, demo="none")
    assert c.workspace == tmp_path.resolve() and c.demo == "none"


@pytest.mark.parametrize("env, match", [({"APP_JOB_BACKEND": "rq"}, "APP_JOB_BACKEND"),
                                        ({"APP_MAX_UPLOAD_MB": "lots"}, "APP_MAX_UPLOAD_MB"),
                                        ({"APP_DEVICE": "tpu"}, "APP_DEVICE"),
                                        ({"APP_MAX_UPLOAD_MB": "0"}, "APP_MAX_UPLOAD_MB"),
                                        ({"APP_AUTH": "1"}, "APP_SECRET_KEY"),
                                        ({"APP_AUTH": "maybe"}, "APP_AUTH"),
                                        ({"APP_Z_CONSENSUS": "0.5"}, "APP_Z_CONSENSUS"),
                                        ({"APP_Z_CONSENSUS": "some"}, "APP_Z_CONSENSUS")])
def test_bad_values_name_the_variable(tmp_path, env, match):
    with pytest.raises(ValueError, match=match):
        Config.from_env(env={"APP_WORKSPACE": str(tmp_path), **env})


def test_unknown_override_is_refused(tmp_path):
    with pytest.raises(TypeError, match="unknown config keys"):
        Config.from_env(env={}, workspace=tmp_path, colour="red")


def test_to_env_rebuilds_the_same_config(tmp_path):
    c = Config(workspace=tmp_path, data_roots=(tmp_path / "d",), job_backend="diskcache", max_upload_mb=5,
               torch_threads=2, device="cpu")
    back = Config.from_env(env=c.to_env())
    assert (back.workspace, back.data_roots, back.max_upload_mb, back.torch_threads, back.device) == \
        (c.workspace, c.data_roots, 5, 2, "cpu")


def test_demo_path_folder_becomes_a_data_root(tmp_path):
    from app.__main__ import config_from_args, parse_args

    vol = tmp_path / "elsewhere" / "stack.tif"
    args = parse_args(["--workspace", str(tmp_path / "w"), "--demo", str(vol)])
    c = config_from_args(args)
    assert Path(vol).parent.resolve() in c.data_roots
    assert parse_args([]).port == 8050 and parse_args([]).host == "127.0.0.1"


def test_pretrain_settings_from_the_environment(tmp_path):
    c = Config.from_env(env={"APP_WORKSPACE": str(tmp_path), "APP_PRETRAIN": '{"steps": 20}',
                             "APP_PRETRAIN_AUTO": "off"})
    assert c.extra["pretrain"] == {"steps": 20} and c.pretrain_auto is False
    assert Config.from_env(env={"APP_WORKSPACE": str(tmp_path)}).pretrain_auto is True     # on by default
    back = Config.from_env(env=c.to_env())
    assert back.extra["pretrain"] == {"steps": 20} and back.pretrain_auto is False
    with pytest.raises(ValueError, match="APP_PRETRAIN_AUTO"):
        Config.from_env(env={"APP_WORKSPACE": str(tmp_path), "APP_PRETRAIN_AUTO": "maybe"})
    with pytest.raises(ValueError, match="APP_PRETRAIN must be a JSON object"):
        Config.from_env(env={"APP_WORKSPACE": str(tmp_path), "APP_PRETRAIN": "[20]"})
