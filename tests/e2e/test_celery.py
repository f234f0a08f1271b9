"""The loop with the Celery job backend: a real redis-server and a real prefork Celery worker.

Jobs run in a pool process forked by the worker; a forked job whose parent already ran a
multi-threaded torch op hangs forever, so every wait has a deadline and a hang fails with
the worker's log.
"""
from __future__ import annotations

import re

import pytest

from tests.e2e import flows, procs
from tests.e2e.browser import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480),
              pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")]


@pytest.fixture
def celery_app(workspace, processes, tmp_path):
    """redis-server + Celery worker + ``python -m app`` with APP_JOB_BACKEND=celery: (worker, URL, all)."""
    _, redis_url = procs.start_redis(tmp_path, processes.add)
    worker = procs.start_celery_worker(workspace, redis_url, tmp_path, processes.add)
    _, url = procs.start_dev_server(workspace, tmp_path, processes.add,
                                    env_extra={"APP_JOB_BACKEND": "celery", "REDIS_URL": redis_url})
    return worker, url, tuple(processes.procs)


def _succeeded(worker: procs.Proc) -> int:
    return len(re.findall(r"Task \S+\[[0-9a-f-]+\] succeeded", worker.log(10**7)))


def test_loop_with_celery_worker(celery_app, workspace, driver):
    worker, url, everything = celery_app
    _, gt = procs.demo_ground_truth(workspace)
    page = Page(driver, url, watch=everything)   # redis, worker or server dying fails the wait at once
    flows.open_page(page)
    z = flows.current_slice(page)
    flows.paint_class(page, "mitochondria", flows.fg_strokes(gt[z]))
    flows.paint_class(page, "background", flows.bg_strokes(gt[z]))

    def live() -> None:          # live mode's update runs where the jobs run
        page.click_el(page.el("live-switch"))
        flows.wait_live_update(page, None)

    for step, run in (("suggest", lambda: flows.suggest(page, k=3, patch=64)),
                      ("train", lambda: flows.train(page)),
                      ("segment", lambda: flows.segment(page)),
                      ("live", live)):
        done = _succeeded(worker)
        worker.check_alive()
        run()
        worker.check_alive()
        # the job really ran in the worker (not in the web process)
        page.wait(lambda: _succeeded(worker) > done, 30, f"the Celery worker to log the {step} task as succeeded",
                  context=lambda: worker.log(3000))
    wanted = {("suggest", "done"), ("train", "done"), ("segment", "done")}
    page.wait(lambda: wanted <= {(j["kind"], j["state"]) for j in page.jobs()}, 20,
              "the jobs list to show suggest, train and segment done", context=lambda: str(page.jobs()))
