"""Fixtures for the end-to-end tests: real servers/workers as subprocesses, a real headless Chromium.

Every subprocess is stopped in teardown; when a test fails, the logs of its processes,
the browser console and a screenshot are printed / saved so the failure can be read.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.e2e import browser, procs

REPO = procs.REPO
SCREENSHOTS = REPO / "docs" / "screenshots"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item so fixtures can tell, in teardown, whether the test failed."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def _failed(request) -> bool:
    return any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))


@pytest.fixture(scope="session", autouse=True)
def _needs_chromium():
    missing = browser.chromium_available()
    if missing:
        pytest.fail(f"end-to-end tests need Chromium: {missing}")


class ProcessGroup:
    """The subprocesses one test started; stopped (and their logs dumped on failure) at teardown."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[procs.Proc] = []

    def add(self, proc: procs.Proc) -> procs.Proc:
        self.procs.append(proc)
        return proc

    def dump(self) -> None:
        for p in self.procs:
            print(f"\n===== log of {p.name} (pid {p.pid}, {' '.join(p.cmd[:6])} ...) =====\n{p.log(20000)}")

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop()


@pytest.fixture
def processes(tmp_path, request):
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()
    if _failed(request):
        group.dump()


@pytest.fixture
def workspace() -> Path:
    """A fresh workspace with the tiny synthetic demo project already in it.

    Under a short /tmp/activeseg-e2e-* folder rather than pytest's long tmp path: the Data
    panel prints the data folder, and the README screenshots show it.
    """
    root = Path(tempfile.mkdtemp(prefix="activeseg-e2e-"))
    yield procs.make_workspace(root / "workspace")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def downloads(tmp_path) -> Path:
    d = tmp_path / "downloads"
    d.mkdir()
    return d


@pytest.fixture
def driver(tmp_path, downloads, request):
    drv = browser.make_driver(tmp_path / "chrome-profile", downloads)
    yield drv
    if _failed(request):
        shot = tmp_path / "failure.png"
        try:
            drv.save_screenshot(str(shot))
            print(f"\n===== failure screenshot: {shot}")
        except Exception:  # noqa: BLE001 - the browser may be gone
            pass
        print(f"\n===== browser console =====\n{browser.console_log(drv)[-8000:]}")
    drv.quit()


@pytest.fixture
def dev_app(workspace, processes, tmp_path):
    """``python -m app`` (diskcache jobs) on the tiny demo workspace: (process, base URL)."""
    return procs.start_dev_server(workspace, tmp_path, processes.add)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """Where the tests save panel screenshots: docs/screenshots (the README tour) when
    ACTIVESEG_SCREENSHOTS=1, else a temp dir, so a plain test run leaves the tree clean."""
    target = SCREENSHOTS if os.environ.get("ACTIVESEG_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    return target
