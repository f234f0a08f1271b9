"""A first start answers at once: the page says the demo is being prepared, then opens by itself.

``python -m app`` on an empty workspace with the default demo size (16 x 512 x 512, tens of
seconds to generate): the port answers while the demo is generated in the background, the
layout served meanwhile is the "preparing" page, and the real page follows when the demo
volume exists. The seconds to the first answer are printed (not asserted: no timings in tests).
"""
from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.e2e import procs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _layout(url: str) -> str:
    with urllib.request.urlopen(url + "/_dash-layout", timeout=10) as resp:
        return json.dumps(json.load(resp))


def test_a_first_start_answers_while_the_demo_is_generated(tmp_path, processes):
    workspace = tmp_path / "ws"
    started = time.monotonic()
    _, url = procs.start_dev_server(workspace, tmp_path, processes.add,
                                    env_extra={"APP_DEMO_SHAPE": "16,512,512", "APP_PRETRAIN_AUTO": "0"})
    answered = time.monotonic() - started
    first = _layout(url)
    print(f"\nfirst start: the port answered after {answered:.1f} s")
    assert "preparing-demo" in first and "viewer-graph" not in first, "the first page was not the preparing page"
    procs.wait_until(lambda: "viewer-graph" in _layout(url), 240, "the real page once the demo is ready")
    print(f"first start: the demo was ready after {time.monotonic() - started:.1f} s")
    from app.config import Config
    from app.services import projects

    cfg = Config(workspace=workspace, demo="none")
    demo = projects.find_project(cfg, "Demo")
    assert demo and projects.list_volumes(cfg, demo["id"])[0]["shape"] == [16, 512, 512]
