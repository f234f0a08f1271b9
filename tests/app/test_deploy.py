"""The deployment files: the Dockerfile and docker-compose.yml pass their linters and say what we mean.

There is no Docker engine on these machines, so the files are checked by hadolint (Dockerfile)
and by the compose specification's JSON schema (check-jsonschema), then for the layout: three
roles from one image and one environment, the worker owning the GPU, redis on a named volume,
and an environment the app itself accepts. ``tests/e2e/test_celery.py`` runs the same roles
without Docker (server, redis-server, a Celery worker from ``app.worker``).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.config import REPO_ROOT, Config

BIN = Path(sys.executable).parent
COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} against ``env``."""
    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""
    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, str(value))


def test_dockerfile_passes_hadolint():
    done = _run(str(BIN / "hadolint"), str(DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_file_follows_the_compose_specification():
    done = _run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_three_roles_from_one_image_and_one_environment():
    services = _compose()["services"]
    assert set(services) == {"web", "worker", "redis"}
    web, worker, redis = services["web"], services["worker"], services["redis"]
    assert web["image"] == worker["image"] and "build" in web
    assert "command" not in web and "app.wsgi:server" in DOCKERFILE.read_text()   # the image's CMD is the web
    assert worker["command"][:3] == ["celery", "-A", "app.worker"]
    assert web["environment"] == worker["environment"], "web and worker must read the same settings"
    gpu = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "deploy" not in web, "the web role must not hold the GPU"
    assert any(v.startswith("redis-data:") for v in redis["volumes"]) and "redis-data" in _compose()["volumes"]
    assert any(v.startswith("workspace:/workspace") for v in web["volumes"])


def test_the_compose_environment_is_one_the_app_accepts():
    env = _compose()["services"]["web"]["environment"]
    with pytest.raises(KeyError, match="APP_SECRET_KEY"):
        {k: _interpolate(v, {}) for k, v in env.items()}
    resolved = {k: _interpolate(v, {"APP_SECRET_KEY": "x" * 64}) for k, v in env.items()}
    config = Config.from_env(env=resolved)
    assert (config.job_backend, config.auth_enabled, config.redis_url) == ("celery", True, "redis://redis:6379/0")
    assert str(config.workspace) == "/workspace"


def test_every_path_the_dockerfile_copies_exists():
    for src in re.findall(r"^COPY (\S+) ", DOCKERFILE.read_text(), re.M):
        assert (REPO_ROOT / src).exists(), src


def test_the_web_side_never_imports_the_worker_module(tmp_path):
    code = ("import sys; from app.config import Config; from app.server import create_app; "
            f"create_app(Config(workspace={str(tmp_path)!r}, demo='none')); "
            "print('app.worker' in sys.modules, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                          env={k: v for k, v in os.environ.items() if not k.startswith("APP_")})
    assert done.returncode == 0, done.stderr
    worker_imported, _torch = done.stdout.split()
    assert worker_imported == "False"
