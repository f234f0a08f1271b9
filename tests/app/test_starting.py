"""The port answers before the app is built: HTTP 503 with a self-reloading page, then the app itself."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

from app.config import REPO_ROOT
from app.starting import StartingServer


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app: " + environ["PATH_INFO"].encode()]


def test_the_starting_page_answers_503_until_the_app_is_handed_over():
    server = StartingServer("127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        status, body = _get(url + "/healthz")
        assert status == 503 and "ActiveSeg is starting" in body and 'http-equiv="refresh"' in body
        server.dispatcher.app = _hello
        assert _get(url + "/healthz") == (200, "the app: /healthz")
    finally:
        server.stop()


def test_a_port_in_use_is_one_line_and_exit_code_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
        done = subprocess.run([sys.executable, "-m", "app", "--port", str(port), "--demo", "none",
                               "--workspace", str(tmp_path / "ws")], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=60, env=clean)
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "cannot listen" in ln]
    assert len(lines) == 1 and str(port) in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "ws").exists(), "a refused start must not create the workspace"
