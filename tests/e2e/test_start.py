"""A first start answers at once: "starting", then "preparing the demo", then the page opens by itself.

``python -m app`` on an empty workspace with the default demo size (16 x 512 x 512, tens of
seconds to generate): the port answers before the app is built (``app.starting``: HTTP 503 and a
self-reloading page), the layout served while the demo is generated in the background is the
"preparing" page, and the real page follows when the demo volume exists. The seconds to the
first answer are printed (not asserted: no timings in tests).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.e2e import procs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _layout(url: str) -> str:
    with urllib.request.urlopen(url + "/_dash-layout", timeout=10) as resp:
        return json.dumps(json.load(resp))


def _answer(url: str) -> tuple[int, str] | None:
    """(HTTP status, body), or None while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return None


def test_a_first_start_answers_while_the_demo_is_generated(tmp_path, processes):
    workspace, port = tmp_path / "ws", procs.free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [procs.PYTHON, "-m", "app", "--workspace", str(workspace), "--port", str(port), "--demo", "synthetic"]
    started = time.monotonic()
    proc = procs.Proc("app", cmd, procs.app_env(workspace, APP_DEMO_SHAPE="16,512,512", APP_PRETRAIN_AUTO="0"),
                      tmp_path)
    processes.add(proc)
    answers = []
    procs.wait_until(lambda: answers.append(_answer(url + "/")) or answers[-1] is not None, 60,
                     "any answer on the port", (proc,), poll=0.05)
    print(f"\nfirst start: the port answered after {time.monotonic() - started:.1f} s")
    status, body = answers[-1]
    assert status == 503 and "ActiveSeg is starting" in body, f"the first answer was not the starting page: {status}"
    procs.wait_until(lambda: procs.http_ok(url + "/_dash-layout"), 90, "the app behind the starting page", (proc,))
    print(f"first start: the app answered after {time.monotonic() - started:.1f} s")
    first = _layout(url)
    assert "preparing-demo" in first and "viewer-graph" not in first, "the first layout was not the preparing page"
    procs.wait_until(lambda: "viewer-graph" in _layout(url), 240, "the real page once the demo is ready")
    print(f"first start: the demo was ready after {time.monotonic() - started:.1f} s")
    from app.config import Config
    from app.services import projects

    cfg = Config(workspace=workspace, demo="none")
    demo = projects.find_project(cfg, "Demo")
    assert demo and projects.list_volumes(cfg, demo["id"])[0]["shape"] == [16, 512, 512]
