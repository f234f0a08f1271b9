"""A job that fails shows its error in the page, keeps it across a reload, and loses no work."""
from __future__ import annotations

import pytest

from tests.e2e import flows, procs
from tests.e2e.browser import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240),
              pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")]


def test_failed_jobs_show_their_error_and_lose_nothing(dev_app, workspace, driver):
    server, url = dev_app
    _, gt = procs.demo_ground_truth(workspace)
    page = Page(driver, url, watch=(server,))
    flows.open_page(page)
    z = flows.current_slice(page)
    flows.paint_class(page, "mitochondria", flows.fg_strokes(gt[z], n=2))
    counts = page.counts()
    assert counts["mitochondria"] > 0 and counts["background"] == 0

    page.tab("Training")
    page.set_input("tr-epochs", 1)
    page.click("tr-train-btn")
    page.wait(lambda: "Failed" in page.text("tr-status"), flows.JOB_TIMEOUT["train"],
              "the training job (one class labeled) to fail", context=page.page_summary)
    assert "class" in page.text("tr-status").lower(), page.text("tr-status")   # says what is wrong
    page.wait(lambda: page.el("tr-train-btn").get_attribute("disabled") is None, 20, "Train to be enabled again")

    page.tab("Results")
    page.click("seg-run-btn")
    page.wait(lambda: "Failed" in page.text("seg-status"), flows.JOB_TIMEOUT["segment"],
              "segmenting without a model to fail", context=page.page_summary)
    assert "model" in page.text("seg-status").lower(), page.text("seg-status")

    failed = page.wait(lambda: {j["kind"]: j["error"] for j in page.jobs() if j["state"] == "failed"}
                       .keys() >= {"train", "segment"} and page.jobs(), 30,
                       "both failed jobs, with their errors, in the jobs list", context=lambda: str(page.jobs()))
    errors = {j["kind"]: j["error"] for j in failed if j["state"] == "failed"}
    assert all(errors.values()), f"a failed job shows no error text: {errors}"

    driver.refresh()
    flows.open_page(page)
    assert page.counts() == counts, "labels changed after failed jobs and a reload"
    page.wait(lambda: {j["kind"]: j["error"] for j in page.jobs() if j["state"] == "failed"} == errors, 30,
              "the failed jobs and their errors to be listed after a reload", context=lambda: str(page.jobs()))
    page.tab("Training")
    assert page.table_rows("tr-versions-table") == [], "a failed training left a model version"
    # the page still works after the failures: painting the missing class is saved
    flows.paint_class(page, "background", flows.bg_strokes(gt[z], n=1))
