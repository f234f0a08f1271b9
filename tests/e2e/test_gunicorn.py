"""Under ``gunicorn --preload --workers 1|2 --threads 4 app.wsgi:server`` the page loads and a job completes.

With --preload the app is built in the gunicorn master and forked into the worker, which
forks again for each background job: the place where a fork after multi-threaded torch
work would hang. The job must finish within its deadline.
"""
from __future__ import annotations

import urllib.request

import pytest

from tests.e2e import flows, procs
from tests.e2e.browser import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")]


@pytest.mark.parametrize("workers", [1, 2])
def test_gunicorn_serves_page_and_runs_a_job(workspace, processes, tmp_path, driver, workers):
    server, url = procs.start_gunicorn(workspace, tmp_path, processes.add, workers=workers)
    page = Page(driver, url, watch=(server,))
    flows.open_page(page)
    flows.check_tiles_and_step(page)
    href = page.slice_image_href()
    with urllib.request.urlopen(url + href, timeout=10) as r:
        assert r.headers["Content-Type"] == "image/png" and r.headers.get("ETag"), dict(r.headers)
    flows.suggest(page, k=3, patch=64)
    page.wait(lambda: any(j["kind"] == "suggest" and j["state"] == "done" for j in page.jobs()), 20,
              "the jobs list to show the suggest job done", context=lambda: str(page.jobs()))
    server.check_alive()
