"""Self-supervised pre-training in a real Chromium against ``python -m app``.

A volume added by path starts pre-training by itself (the Data panel's switch is on); the
job shows in the jobs list with its progress bar, is cancelled there and reads cancelled, the
Data panel offers to resume it, and the resumed job goes on from the snapshot to the end.
The budget is tiny (APP_PRETRAIN: a time limit of a few seconds on 64 px crops).
"""
from __future__ import annotations

import json
import re

import pytest

from tests.e2e import flows, procs
from tests.e2e.browser import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")]
BUDGET_S = 30     # each run: long enough to see it running and cancel it, short enough to wait for the end
PRETRAIN = {"steps": 100_000, "max_seconds": BUDGET_S, "crop": 64, "batch_size": 2, "block": 8, "save_every": 25}


def _percent(text: str) -> int:
    m = re.search(r"(\d+)%", text or "")
    return int(m.group(1)) if m else -1


def test_added_volume_pretrains_by_itself_cancel_and_resume(workspace, processes, tmp_path, driver):
    import tifffile

    from ml.synthetic import make_em_volume

    raw, _ = make_em_volume((4, 128, 128), seed=3)
    (workspace / "data").mkdir(exist_ok=True)
    tifffile.imwrite(workspace / "data" / "small.tif", raw, imagej=True, metadata={"axes": "ZYX"})
    server, url = procs.start_dev_server(workspace, tmp_path, processes.add,
                                         env_extra={"APP_PRETRAIN_AUTO": "1", "APP_PRETRAIN": json.dumps(PRETRAIN)})
    page = Page(driver, url, watch=(server,))
    flows.open_page(page)
    assert page.d.execute_script("return document.getElementById('pretrain-auto-switch').checked"), \
        "the 'Pre-train on new volumes' switch is not on although APP_PRETRAIN_AUTO=1"

    flows.add_volume_by_path(page, "small.tif")
    running = page.wait(lambda: re.search(r"\(job (\d+)\)", page.text("pretrain-status")), 30,
                        "the Data panel to show the new volume's pre-training running",
                        context=lambda: f"{page.text('pretrain-status')!r}; {page.page_summary()}")
    job_id = int(running.group(1))
    row = page.wait(lambda: (r := flows.job_row(page, job_id)) and r["state"] == "running"
                    and _percent(r["progress"]) > 0 and r, 90,
                    f"pre-training job {job_id} running with progress in the jobs list",
                    context=lambda: str(page.jobs()))
    assert row["kind"] == "pretrain" and page.css("#jobs-table .progress-bar"), row

    flows.cancel_job(page, job_id)
    page.wait(lambda: flows.job_row(page, job_id).get("state") == "cancelled", 30,
              f"job {job_id} to read cancelled", context=lambda: str(page.jobs()))
    stopped = page.wait(lambda: (t := page.text("pretrain-status")) and "resumable" in t and t, 20,
                        "the Data panel to offer resuming", context=lambda: page.text("pretrain-status"))
    steps_at_cancel = int(re.search(r"stopped at ([\d,]+) step", stopped).group(1).replace(",", ""))
    assert page.text("pretrain-start-btn") == "Resume", page.text("pretrain-start-btn")

    page.click("pretrain-start-btn")
    resumed = page.wait(lambda: [int(j["#"]) for j in page.jobs() if j["kind"] == "pretrain"
                                 and int(j["#"]) > job_id], 30, "a second pre-training job in the jobs list",
                        context=lambda: str(page.jobs()))[0]
    page.wait(lambda: flows.job_row(page, resumed).get("state") in ("done", "failed"), BUDGET_S + 90,
              f"the resumed pre-training job {resumed} to finish", context=lambda: str(page.jobs()))
    assert flows.job_row(page, resumed)["state"] == "done", page.jobs()
    done = page.wait(lambda: (t := page.text("pretrain-status")) and t.startswith("done") and t, 20,
                     "the Data panel to show the finished pre-training", context=lambda: page.text("pretrain-status"))
    steps_done = int(re.search(r"done \(([\d,]+) step", done).group(1).replace(",", ""))
    assert steps_done > steps_at_cancel, (stopped, done)
    assert "new models start from it" in done and page.text("pretrain-start-btn") == "Pre-train again"
