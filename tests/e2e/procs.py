"""Real subprocesses for the end-to-end tests: the app, gunicorn, redis-server, a Celery worker.

Each process runs in its own session (process group), logs to a file, and is stopped by
signalling that group, so the job processes it forked (Dash diskcache jobs, Celery pool
children) go with it. Nothing here mocks the app: it is started exactly as a user would.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
REDIS_SERVER = "/usr/bin/redis-server"

# Small and fast: the e2e loop must finish in minutes on 2 shared cores.
TINY_SHAPE = (8, 256, 256)
TINY_MODEL = {"base": 8, "depth": 3}
TINY_TRAIN = {"crop": 64, "batch_size": 4, "eval_every": 10}
# Environment knobs (app/config.py) for a tiny demo / model / training.
TINY_ENV = {
    "APP_DEMO_SHAPE": ",".join(map(str, TINY_SHAPE)),
    "APP_MODEL": json.dumps(TINY_MODEL),
    "APP_TRAIN": json.dumps(TINY_TRAIN),
    "APP_TORCH_THREADS": "1",
}


TRAIN_EPOCHS = 3  # with the tiny model of TINY_ENV: long enough to watch the live curve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(workspace: Path, **extra: str) -> dict[str, str]:
    """Environment for any app process (server, worker): repo importable, tiny knobs, workspace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_") and k != "REDIS_URL"}
    env.update(TINY_ENV)
    env.update({"APP_WORKSPACE": str(workspace), "APP_DEMO": "synthetic", "PYTHONUNBUFFERED": "1",
                "APP_DATA_ROOTS": str(Path(workspace) / "data"),   # hermetic: nothing outside the test
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
                "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env


def make_workspace(root: Path, shape: tuple[int, int, int] = TINY_SHAPE) -> Path:
    """A workspace holding the synthetic demo project at ``shape`` (the server then finds it ready).

    Building it here uses ``Config.demo_shape`` directly, so a server start does not spend
    half a minute generating the default 16x512x512 demo.
    """
    from app.config import Config
    from app.demo import ensure_demo

    config = Config(workspace=root, demo="synthetic", demo_shape=tuple(shape))
    ensure_demo(config, "synthetic")
    return config.workspace


def demo_ground_truth(workspace: Path):
    """(volume id, dense 0/1 mito mask) of the demo volume, for choosing where to paint."""
    import numpy as np

    from app.config import Config
    from app.services import projects

    config = Config(workspace=workspace, demo="none")
    proj = projects.list_projects(config)[0]
    vol = projects.list_volumes(config, proj["id"])[0]
    gt = projects.open_ground_truth(config, vol["id"])
    return vol["id"], np.asarray(gt[:]) > 0


def labels_path(workspace: Path) -> Path:
    """The demo volume's label store folder (read-only use: the store is safe across processes)."""
    from app.workspace import Workspace

    vid, _ = demo_ground_truth(workspace)
    return Workspace(workspace).labels_dir(vid)


class Proc:
    """One logged subprocess in its own process group."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path, cwd: Path = REPO):
        self.name, self.cmd = name, cmd
        self.log_path = Path(log_dir) / f"{name}.log"
        self._fh = open(self.log_path, "wb")
        self.popen = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, max_chars: int = 12000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-max_chars:]

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"{self.name} exited with code {self.popen.returncode}:\n{self.log()}")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if still there after ``grace_s``."""
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)          # stragglers in the group (forked job processes)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._fh.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)    # the group this Popen created (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass


def wait_until(check: Callable[[], bool], timeout: float, what: str, procs: tuple[Proc, ...] = (),
               poll: float = 0.2) -> None:
    """Poll ``check`` until true; fail with ``what`` (and the logs of dead ``procs``) on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in procs:
            p.check_alive()
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not ready yet (connection refused, ...)
            pass
        time.sleep(poll)
    logs = "\n".join(f"--- {p.name} ---\n{p.log(4000)}" for p in procs)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


Register = Callable[[Proc], object]


def users_cli(workspace: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """``python -m app users ARGS`` on ``workspace`` (the admin's CLI)."""
    return subprocess.run([PYTHON, "-m", "app", "users", "--workspace", str(workspace), *args],
                          input=stdin, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=app_env(workspace))


def start_dev_server(workspace: Path, log_dir: Path, register: Register, env_extra: dict | None = None,
                     timeout: float = 90, ready_path: str = "/") -> tuple[Proc, str]:
    """``python -m app`` on a free port; returns (process, base URL) once ``ready_path`` answers.

    ``register`` receives the process as soon as it exists, so teardown stops it even when
    it never becomes ready.
    """
    port = free_port()
    cmd = [PYTHON, "-m", "app", "--workspace", str(workspace), "--port", str(port), "--demo", "synthetic"]
    proc = Proc("app", cmd, app_env(workspace, **(env_extra or {})), log_dir)
    register(proc)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + ready_path), timeout, f"the app at {url}", (proc,))
    return proc, url


SHARED_USER, SHARED_PASSWORD = "lena", "shared-mode-password-1"
SHARED_ENV = {"APP_AUTH": "1", "APP_SECRET_KEY": "e2e-shared-secret-0123456789"}


def start_app(workspace: Path, log_dir: Path, register: Register, shared: bool,
              env_extra: dict | None = None) -> tuple[Proc, str]:
    """``start_dev_server``; ``shared``: in shared mode (APP_AUTH=1), with SHARED_USER added by the CLI first."""
    env = dict(env_extra or {})
    if shared:
        added = users_cli(workspace, "add", SHARED_USER, "--password-stdin", stdin=SHARED_PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
        env.update(SHARED_ENV)
    return start_dev_server(workspace, log_dir, register, env_extra=env, ready_path="/healthz")


def start_gunicorn(workspace: Path, log_dir: Path, register: Register, timeout: float = 90,
                   env_extra: dict | None = None, workers: int = 1) -> tuple[Proc, str]:
    """``gunicorn --preload --workers W --threads 4 app.wsgi:server`` on a free port."""
    port = free_port()
    cmd = [PYTHON, "-m", "gunicorn", "--preload", "--workers", str(workers), "--threads", "4", "--timeout", "120",
           "--bind", f"127.0.0.1:{port}", *_gunicorn_isolation(log_dir), "app.wsgi:server"]
    proc = Proc("gunicorn", cmd, app_env(workspace, **(env_extra or {})), log_dir)
    register(proc)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/"), timeout, f"gunicorn at {url}", (proc,))
    return proc, url


def _gunicorn_isolation(log_dir: Path) -> list[str]:
    """Keep gunicorn's control socket (gunicorn >= 24) in the test's folder, not a shared ~/.gunicorn."""
    out = subprocess.run([PYTHON, "-m", "gunicorn", "--help"], capture_output=True, text=True, timeout=60).stdout
    return ["--control-socket", str(Path(log_dir) / "gunicorn.ctl")] if "--control-socket" in out else []


def start_redis(log_dir: Path, register: Register, timeout: float = 20) -> tuple[Proc, str]:
    """A throwaway redis-server (no persistence) on a free port; returns (process, redis URL)."""
    port = free_port()
    cmd = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(log_dir)]
    proc = Proc("redis", cmd, dict(os.environ), log_dir)
    register(proc)

    def pong() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    wait_until(pong, timeout, f"redis-server on port {port}", (proc,))
    return proc, f"redis://127.0.0.1:{port}/0"


def start_celery_worker(workspace: Path, redis_url: str, log_dir: Path, register: Register,
                        timeout: float = 90, node: str = "worker") -> Proc:
    """``celery -A app.worker worker --pool=prefork --concurrency=1``; returns once it is ready."""
    cmd = [PYTHON, "-m", "celery", "-A", "app.worker", "worker", "--pool=prefork", "--concurrency=1",
           "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{node}@%h"]
    env = app_env(workspace, APP_JOB_BACKEND="celery", REDIS_URL=redis_url)
    proc = Proc(node, cmd, env, log_dir)
    register(proc)
    wait_until(lambda: " ready." in proc.log(100000), timeout, "the Celery worker to be ready", (proc,))
    return proc
