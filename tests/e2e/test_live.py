"""Live mode in a real headless Chromium against ``python -m app`` (diskcache jobs).

Paint both classes, switch Live on: the prediction overlay appears (a draft trained on the
strokes). Paint mitochondria on an object nobody labeled yet: the overlay is refreshed and its
pixels on that object change (fetched as PNGs, compared). Keep turns the draft into the active
model version. The pen-up-to-overlay time is printed (bench/live.py measures it properly).
The same runs in shared mode (APP_AUTH=1): signed in, behind the login and the callback guard.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from tests.e2e import flows, procs
from tests.e2e.browser import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")]
WAIT_S = flows.LIVE_WAIT_S


@pytest.mark.parametrize("mode", ["single-user", "shared"])
def test_live_overlay_follows_a_stroke_and_keep_adds_a_version(workspace, processes, tmp_path, driver, screenshots,
                                                                mode):
    shared = mode == "shared"
    server, url = procs.start_app(workspace, tmp_path, processes.add, shared, env_extra={"APP_PRETRAIN_AUTO": "0"})
    _, gt = procs.demo_ground_truth(workspace)
    page = Page(driver, url, watch=(server,))
    flows.open_app(page, url, shared)
    cookies = flows.browser_cookies(page)
    z = flows.current_slice(page)
    strokes = flows.fg_strokes(gt[z], n=3)
    assert len(strokes) == 3, "the demo slice needs three objects"
    flows.paint_class(page, "mitochondria", strokes[:2])
    flows.paint_class(page, "background", flows.bg_strokes(gt[z]))

    page.click_el(page.el("live-switch"))
    first = flows.wait_live_update(page, None)
    assert "Live draft: 1 update" in page.text("live-status"), page.text("live-status")
    before = flows.fetch_overlay(url, first, cookies)

    lab, _ = ndimage.label(gt[z])
    x, y = strokes[2][1]
    target = lab == lab[y, x]                        # the third object: no label on it yet
    started = time.monotonic()
    flows.paint_class(page, "mitochondria", [strokes[2]])
    second = flows.wait_live_update(page, flows.live_rev(first))
    print(f"\nlive: stroke to refreshed overlay {time.monotonic() - started:.1f} s (browser, this machine)")
    after = flows.fetch_overlay(url, second, cookies)
    assert after.shape == before.shape == gt[z].shape + (4,)
    changed = np.abs(after[..., 3].astype(int) - before[..., 3].astype(int))[target]
    assert changed.mean() > 0, "the overlay of the newly painted object did not change"
    (x0, row), (x1, _) = strokes[2][0], strokes[2][-1]
    under = after[row, x0:x1 + 1, 3] > 127                 # the overlay is opaque where mitochondria win
    print(f"live: object seen as mitochondria on {(before[..., 3][target] > 127).mean():.2f} -> "
          f"{(after[..., 3][target] > 127).mean():.2f} of its pixels; under the stroke {under.mean():.2f}")
    assert under.mean() >= 0.9, "the draft does not predict mitochondria under the stroke just painted"
    page.wait(lambda: "2 updates" in page.text("live-status"), 30, "the status to count two updates",
              context=lambda: page.text("live-status"))
    if not shared:
        page.screenshot(screenshots / "live.png", "slot-viewer")

    page.click("live-keep-btn")
    page.wait(lambda: "Kept the draft as model v" in page.text("live-status"), WAIT_S, "the draft to be kept",
              context=lambda: page.text("live-status"))
    page.tab("Training")
    rows = page.wait(lambda: page.table_rows("tr-versions-table"), 30, "the model versions table")
    assert len(rows) == 1 and rows[0]["active"] == "●", rows
    assert any("live draft" in v for v in rows[0].values()), rows
