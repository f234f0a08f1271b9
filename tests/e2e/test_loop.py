"""The whole loop in a real headless Chromium against ``python -m app`` (diskcache jobs).

Open the page, check the slice is a /tiles/ URL that changes when stepping, paint
foreground and background strokes with the mouse, ask for patches and label one, train,
segment, export, then reload and find everything still there; once in single-user mode and
once signed in under APP_AUTH=1. Screenshots of each panel go to docs/screenshots/ (docs/TOUR.md
shows them).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from layouts import ids
from tests.e2e import flows, procs
from tests.e2e.browser import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420),
              pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")]
PATCH = 64


@pytest.mark.parametrize("mode", ["single-user", "shared"])
def test_whole_loop_survives_reload(workspace, processes, tmp_path, driver, downloads, screenshots, mode):
    shared = mode == "shared"
    server, url = procs.start_app(workspace, tmp_path, processes.add, shared)
    _, gt = procs.demo_ground_truth(workspace)
    page = Page(driver, url, watch=(server,))
    if shared:                  # the README's screenshots come from the single-user run
        screenshots = tmp_path / "screens"
        screenshots.mkdir()
    flows.open_app(page, url, shared)
    page.wait(lambda: "\u2713 Data" in page.text("guide-bar"), 30, "the guide bar to tick Data (a demo volume is there)")
    assert "\u2713 Train" not in page.text("guide-bar")
    flows.check_tiles_and_step(page)
    _check_enter_applies_a_typed_contrast(page)
    z = flows.current_slice(page)
    fg = flows.paint_class(page, "mitochondria", flows.fg_strokes(gt[z]))
    bg = flows.paint_class(page, "background", flows.bg_strokes(gt[z]))
    assert fg > 0 and bg > 0
    _check_strokes_landed_where_drawn(workspace, z, gt[z])
    page.screenshot(screenshots / "data.png", "slot-data")
    page.screenshot(screenshots / "viewer-labels.png", "slot-viewer")

    flows.suggest(page, k=4, patch=PATCH)
    flows.label_suggestion(page, gt, PATCH, index=0)
    page.tab("Active learning")
    page.screenshot(screenshots / "active-learning.png", "slot-active")
    page.screenshot(screenshots / "suggestion-in-viewer.png")

    assert not any("/prediction/" in h for h in page.image_hrefs()), "a prediction is shown before any model"
    trained = flows.train(page)
    assert trained["versions"][0]["active"] == "●", trained["versions"]
    page.wait(lambda: "\u2713 Train" in page.text("guide-bar"), 30, "the guide marking Train done",
              context=lambda: page.text("guide-bar"))
    shown = flows.shown_overlay(page, url, "prediction")       # the new model's, on the slice in view
    assert (shown[..., 3] > 127).mean() > 0.005, "the trained model's prediction is not visible in the viewer"
    page.screenshot(screenshots / "training.png", "slot-training")

    objects = flows.segment(page)
    page.wait(lambda: "\u2713 Segment" in page.text("guide-bar"), 30, "the guide marking Segment done",
              context=lambda: page.text("guide-bar"))
    outlines = flows.shown_overlay(page, url, "objects")
    assert (outlines[..., 3] > 0).sum() > 20, "no object outlines in the viewer after segmenting"
    _check_object_named_under_cursor(page, outlines)
    page.screenshot(screenshots / "results.png", "slot-results")
    _check_uncertainty_strip(page, gt.shape[0])

    tif = flows.export(page, downloads, "segmentation", "tiff", "TIFF (Fiji / ImageJ)")
    csv = flows.export(page, downloads, "objects", "csv", "CSV")
    page.screenshot(screenshots / "export.png", "slot-export")
    flows.show_prediction(page)
    page.reset_zoom()
    page.tab("Results")
    page.screenshot(screenshots / "overview.png")

    before = flows.snapshot(page)
    driver.refresh()
    flows.open_page(page)
    after = flows.snapshot(page)
    assert after["counts"] == before["counts"], "labeled-pixel counts changed across a reload"
    assert after["counts"]["mitochondria"] >= fg and after["counts"]["background"] > bg
    assert after["queue"] == before["queue"] and after["queue"][0]["status"] == "labeled"
    assert after["versions"] == before["versions"] and len(after["versions"]) == 1
    assert "done" in after["live_title"], after["live_title"]
    assert after["objects"] == before["objects"] and after["objects"] == objects
    assert after["summary"] == before["summary"]
    kinds = {(kind, state) for _, kind, state in after["jobs"]}
    assert {("suggest", "done"), ("train", "done"), ("segment", "done"), ("export", "done")} <= kinds, after["jobs"]

    _check_exports(tif, csv, gt.shape, before["summary"])


def _check_enter_applies_a_typed_contrast(page: Page) -> None:
    """Typing a contrast bound in the slider's box and pressing Enter redraws the slice with it."""
    from selenium.webdriver.common.keys import Keys

    box = page.css(f"#{ids.CONTRAST} input.dash-range-slider-min-input")
    assert box, "the contrast slider has no number box"
    original = box[0].get_attribute("value")
    box[0].send_keys(Keys.CONTROL, "a")
    box[0].send_keys("40", Keys.ENTER)
    page.wait(lambda: "lo=40&" in page.slice_image_href(), 15, "the slice redrawn with the typed contrast",
              context=page.slice_image_href)
    box[0].send_keys(Keys.CONTROL, "a")
    box[0].send_keys(original, Keys.ENTER)
    page.wait(lambda: "lo=40&" not in page.slice_image_href(), 15, "the contrast put back")


def _check_object_named_under_cursor(page: Page, outlines: np.ndarray) -> None:
    """Hovering an outlined object names it beside the slice label ("object N: ... µm³")."""
    edge = outlines[..., 3] > 0
    flat = edge[:, 1:-1] & edge[:, :-2] & edge[:, 2:]       # on a horizontal run of an outline: inside it
    rows, cols = np.nonzero(flat)
    r, c = int(rows[len(rows) // 2]), int(cols[len(cols) // 2]) + 1
    page.reset_zoom()                          # a suggestion zoomed the viewer to its patch
    page.hover(c, r)
    text = page.wait(lambda: page.text("viewer-object-under-cursor"), 20, "the object under the cursor named",
                     context=lambda: page.text("viewer-object-under-cursor"))
    assert text.startswith("object ") and "µm³" in text, text


def _check_uncertainty_strip(page: Page, depth: int) -> None:
    """After segmenting, the strip under the slider has one bar per slice and "worst slice" goes to the highest."""
    def bars():
        return page.d.execute_script("""
            const gd = document.querySelector('#viewer-uncertainty-strip .js-plotly-plot');
            const t = gd && gd.data && gd.data[0];
            return t && t.type === 'bar' && t.y ? Array.from(t.y) : null;""")

    values = page.wait(bars, 30, "the uncertainty strip's bars after segmenting")
    assert len(values) == depth and max(values) > 0, values
    page.click("viewer-uncertainty-worst-btn")
    worst = int(np.argmax(values))
    page.wait(lambda: flows.current_slice(page) == worst, 15, f"the worst slice (z={worst}) to show")


def _check_strokes_landed_where_drawn(workspace, z: int, mito: np.ndarray) -> None:
    """The stored labels lie under the mouse path: mitochondria strokes on objects, background off them.

    Catches a wrong screen -> pixel mapping (swapped axes, half-pixel or zoom offsets).
    """
    from scipy import ndimage

    from ml.labels import LabelStore

    labels = LabelStore.open(procs.labels_path(workspace)).read_slice(z)
    outside = ndimage.distance_transform_edt(~mito)      # px from the nearest object pixel
    brush_reach = flows.BRUSH_PX / 2 + 1.5                # half the brush, plus rounding
    fg, bg = labels == 2, labels == 1
    assert fg.any() and bg.any()
    assert outside[fg].max() <= brush_reach, f"mitochondria paint {outside[fg].max():.1f} px off the objects"
    assert outside[bg].min() >= flows.BG_MARGIN - brush_reach, \
        f"background paint only {outside[bg].min():.1f} px from an object"


def _check_exports(tif, csv, shape, summary: str) -> None:
    """The downloaded files open with ml.io's readers / pandas and hold what the page showed."""
    from ml.io.readers import open_volume

    vol = open_volume(str(tif))
    seg = np.asarray(vol[:])
    assert seg.shape == tuple(shape), f"exported segmentation has shape {seg.shape}, volume is {shape}"
    values = set(np.unique(seg).tolist())
    assert values <= {0, 1} or values <= {0, 255}, f"binary segmentation holds values {sorted(values)[:10]}"
    assert seg.any(), "the exported segmentation is empty although the object table is not"
    assert vol.voxel_size is not None and np.allclose(vol.voxel_size, (40.0, 5.0, 5.0), rtol=1e-3), \
        f"voxel size lost in the TIFF export: {vol.voxel_size}"
    table = pd.read_csv(csv)
    n_objects = int(summary.split()[0])
    assert len(table) == n_objects, f"CSV has {len(table)} rows, the page says {n_objects} objects"
    assert {"id", "voxels"} <= set(table.columns), list(table.columns)
