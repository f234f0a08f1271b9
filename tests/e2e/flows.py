"""The user's steps through the ActiveSeg page, each ending in an assertion on what the page shows.

Shared by the end-to-end tests (dev server, Celery backend, gunicorn). Ids are the ones in
layouts/ids.py and layouts/ids_panels.py. Timeouts are generous upper bounds for 2 shared
CPU cores; a job that exceeds one is reported as hung, with the page's status texts.
"""
from __future__ import annotations

import io
import re
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from tests.e2e import procs
from tests.e2e.browser import Page

JOB_TIMEOUT = {"suggest": 120, "train": 240, "segment": 180, "export": 120}
BG_MARGIN = 10      # background strokes keep this many px away from any object
BRUSH_PX = 6        # the viewer's default brush width
HANG_HINT = ("A job that never finishes is the fork-after-torch-threads trap (a forked job whose parent "
             "already ran a multi-threaded torch op) or a dead worker: see the process logs below.")


# --- where to paint ---------------------------------------------------------------------------------
def fg_strokes(mask2d: np.ndarray, n: int = 3, min_len: int = 6) -> list[list[tuple[int, int]]]:
    """Horizontal strokes (x, y points) through the middle of the ``n`` largest objects, inside them."""
    lab, count = ndimage.label(mask2d)
    sizes = ndimage.sum(mask2d, lab, range(1, count + 1))
    strokes = []
    for idx in np.argsort(sizes)[::-1]:
        obj = lab == idx + 1
        inner = ndimage.binary_erosion(obj, iterations=3)
        if inner.sum() < min_len:
            continue
        rows = np.nonzero(inner.any(axis=1))[0]
        r = int(rows[len(rows) // 2])
        cols = max(np.split(np.nonzero(inner[r])[0], np.nonzero(np.diff(np.nonzero(inner[r])[0]) > 1)[0] + 1),
                   key=len)                                # the longest run inside the object on that row
        if len(cols) < min_len:
            continue
        strokes.append([(int(cols[0]), r), (int((cols[0] + cols[-1]) // 2), r), (int(cols[-1]), r)])
        if len(strokes) == n:
            break
    assert strokes, "the demo slice has no object large enough to paint inside"
    return strokes


def bg_strokes(mask2d: np.ndarray, n: int = 4, length: int = 36,
               margin: int = BG_MARGIN) -> list[list[tuple[int, int]]]:
    """Horizontal strokes at least ``margin`` px away from every object, one per region of the slice."""
    far = ndimage.distance_transform_edt(~mask2d) > margin
    h, w = mask2d.shape
    strokes = []
    for r0, c0 in [(h // 6, w // 8), (h // 2, w // 2), (5 * h // 6, w // 8), (h // 6, w // 2),
                   (5 * h // 6, w // 2), (h // 2, w // 8)]:
        hit = _free_run(far, r0, c0, length)
        if hit:
            r, c = hit
            strokes.append([(c, r), (c + length // 2, r), (c + length, r)])
        if len(strokes) == n:
            break
    assert strokes, "no object-free stretch on the demo slice for a background stroke"
    return strokes


def _free_run(far: np.ndarray, r0: int, c0: int, length: int, reach: int = 30) -> tuple[int, int] | None:
    """The first (row, col) near (r0, c0) where ``length`` pixels to the right are all in ``far``."""
    h, w = far.shape
    for dr in range(0, reach, 3):
        for r in (r0 + dr, r0 - dr):
            if not 8 <= r < h - 8:
                continue
            for c in range(max(8, c0), min(w - length - 8, c0 + w // 3)):
                if far[r, c:c + length].all():
                    return r, c
    return None


# --- steps ------------------------------------------------------------------------------------------
def open_page(page: Page) -> None:
    """Load the page; the demo volume is selected and its slice shows."""
    page.open()
    page.wait(lambda: "/tiles/" in page.slice_image_href(), 60, "the slice image of the demo volume",
              context=page.page_summary)
    page.wait(lambda: set(page.counts()) >= {"background", "mitochondria"}, 30,
              "the labeled-pixel counts under the viewer", context=lambda: repr(page.text("paint-counts")))


def current_slice(page: Page) -> int:
    m = re.search(r"/tiles/\d+/xy/(\d+)\.png", page.slice_image_href())
    assert m, f"slice image is not an xy tile URL: {page.slice_image_href()!r}"
    return int(m.group(1))


def check_tiles_and_step(page: Page) -> None:
    """The slice is an SVG <image> whose href is a /tiles/ URL (no base64), and stepping changes it."""
    href = page.slice_image_href()
    assert "/tiles/" in href and not href.startswith("data:"), f"slice image href is {href[:120]!r}"
    assert all(not h.startswith("data:") for h in page.image_hrefs()), "an image travels as base64 in the figure"
    assert page.slice_image_loaded(), f"the tile {href} did not load as an image"
    z = current_slice(page)
    page.click("viewer-slice-next")
    page.wait(lambda: current_slice(page) == z + 1, 15, f"the slice image to step from z={z} to z={z + 1}",
              context=lambda: page.slice_image_href())
    assert page.slice_image_loaded()
    page.click("viewer-slice-prev")
    page.wait(lambda: current_slice(page) == z, 15, f"the slice image to step back to z={z}")
    body = page.d.find_element("tag name", "body")
    body.send_keys("k")                      # keyboard: k / right = next, j / left = previous
    page.wait(lambda: current_slice(page) == z + 1, 15, "the 'k' key to step to the next slice")
    body.send_keys("j")
    page.wait(lambda: current_slice(page) == z, 15, "the 'j' key to step back")


def paint_class(page: Page, name: str, strokes: list[list[tuple[int, int]]]) -> int:
    """Paint each stroke with class ``name``; after every stroke that class's count must grow."""
    page.pick_class(name)
    page.wait(lambda: page.dragmode() == "drawopenpath", 10, "the canvas to be in brush (drawopenpath) mode")
    for pts in strokes:
        before = page.counts().get(name, 0)
        page.paint(pts)
        page.wait(lambda: page.counts().get(name, 0) > before, 20,
                  f"the {name} pixel count to increase after a stroke along {pts}",
                  context=lambda: f"counts {page.counts()}; {page.page_summary()}")
    return page.counts()[name]


def suggest(page: Page, k: int = 4, patch: int = 64) -> list[str]:
    """Ask for ``k`` patches; the queue shows them with /thumbs/ thumbnails. Returns the thumb URLs."""
    page.tab("Active learning")
    page.set_input("al-batch-size", k)
    page.set_input("al-patch-size", patch)
    before = page.text("al-status")
    page.click("al-suggest-btn")
    page.wait(lambda: re.search(r"Round \d+", page.text("al-status")) and page.text("al-status") != before
              or "Failed" in page.text("al-status"), JOB_TIMEOUT["suggest"],
              "the suggest job to finish. " + HANG_HINT, context=page.page_summary)
    assert "Failed" not in page.text("al-status"), page.text("al-status")
    thumbs = page.wait(lambda: [im.get_attribute("src") for im in page.css("#al-queue img")], 20,
                       "suggestion thumbnails in the queue")
    assert len(thumbs) == k, f"asked for {k} patches, the queue shows {len(thumbs)}"
    assert all("/thumbs/" in t for t in thumbs), thumbs
    page.wait(lambda: all(page.d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", im)
                          for im in page.css("#al-queue img")), 20, "the thumbnails to load")
    return thumbs


def train(page: Page, epochs: int | None = None) -> dict:
    """Train a new model; the live curve shows progress while it runs and a version row appears."""
    from tests.e2e.procs import TRAIN_EPOCHS

    epochs = epochs or TRAIN_EPOCHS
    page.tab("Training")
    n_versions = len(page.table_rows("tr-versions-table"))
    page.click_el(page.d.find_element("xpath", "//*[@id='tr-budget']//label[contains(., 'by epochs')]"))
    page.set_input("tr-epochs", epochs)
    before = page.text("tr-status")
    page.click("tr-train-btn")
    seen_running = {"value": False}

    def bar() -> tuple[float, str]:
        return tuple(page.d.execute_script(
            "const b = document.querySelector('#tr-progress .progress-bar');"
            "return b ? [Number(b.getAttribute('aria-valuenow') || 0), b.textContent] : [0, ''];"))

    def finished() -> bool:
        if "running" in page.text("tr-live-title") or 0 < float(bar()[0]) < 100:   # the live curve's heading
            seen_running["value"] = True
        status = page.text("tr-status")
        return status != before and ("trained" in status or "Failed" in status)

    page.wait(finished, JOB_TIMEOUT["train"], "the training job to finish. " + HANG_HINT, poll=0.1,
              context=page.page_summary)
    status = page.text("tr-status")
    assert "Failed" not in status, status
    assert seen_running["value"], "never saw the training running (no progress, no live curve title)"
    page.wait(lambda: bar() == (0, ""), 10, "the progress bar to empty once the job ended", context=lambda: str(bar()))
    rows = page.wait(lambda: (r := page.table_rows("tr-versions-table")) and len(r) > n_versions and r, 30,
                     "a new model version in the versions table")
    fig = page.wait(lambda: (f := page.figure("tr-live-graph")) and "done" in page.text("tr-live-title") and f, 30,
                    "the live curve to show the finished job",
                    context=lambda: f"heading {page.text('tr-live-title')!r}, figure {page.figure('tr-live-graph')}. "
                                    + page.page_summary())
    loss = [t for t in fig["data"] if t.get("name") == "loss"]
    assert loss and loss[0]["n"] >= 2, f"the live curve has no loss points: {fig}"
    return {"status": status, "versions": rows, "figure": fig}


def segment(page: Page, min_size: int = 10) -> list[dict]:
    """Segment the volume with the active model; the object table fills and the 3D view shows a mesh."""
    page.tab("Results")
    page.set_input("pp-min-size", min_size)
    before = page.text("seg-status")
    assert "Segmented" not in before, "segment() expects a volume not segmented in this page yet"
    page.click("seg-run-btn")
    page.wait(lambda: "Segmented" in page.text("seg-status") or "Failed" in page.text("seg-status"),
              JOB_TIMEOUT["segment"], "the segmentation job to finish. " + HANG_HINT, context=page.page_summary)
    assert "Failed" not in page.text("seg-status"), page.text("seg-status")
    core = page.el("pp-core").get_attribute("value")       # the page's core threshold reached the job
    assert core and f"core {float(core)}" in page.text("seg-status"), (core, page.text("seg-status"))
    rows = page.wait(lambda: page.table_rows("obj-table"), 30, "rows in the object table",
                     context=lambda: page.text("seg-status") + " | " + page.text("obj-summary"))
    said = re.search(r"(\d+) cut by the volume's edge", page.text("obj-summary"))
    assert said and {r.get("edge") for r in rows} <= {"cut", ""}, (page.text("obj-summary"), rows)
    assert int(said[1]) >= sum(r["edge"] == "cut" for r in rows), rows   # the table's first page; the summary: all
    fig = page.wait(lambda: (f := page.figure("obj-mesh-graph")) and any(t["type"] == "mesh3d" for t in f["data"])
                    and f, 30, "the 3D view to show a mesh")
    assert any(t["type"] == "mesh3d" and t["n"] > 0 for t in fig["data"]), fig
    physical_min_size(page, min_size, page.text("obj-summary"))
    return rows


def physical_min_size(page: Page, voxels: int, summary: str) -> None:
    """The same min size typed in µm³ (the synthetic volume's 40 x 5 x 5 nm voxels hold 1e-6 µm³ each) and
    applied: the status names it in both units and the objects are the same."""
    from selenium.webdriver.support.ui import Select

    assert f"min size {voxels} voxels ({voxels * 1e-6:.3g} µm³)" in page.text("seg-status"), page.text("seg-status")
    Select(page.el("pp-min-unit")).select_by_value("um3")
    page.set_input("pp-min-size", f"{voxels * 1e-6:g}")
    page.click("pp-apply-btn")
    said = f"min size {voxels} voxels ({voxels * 1e-6:.3g} µm³)"
    page.wait(lambda: said in page.text("pp-status") or "rror" in page.text("pp-status"), JOB_TIMEOUT["segment"],
              "the post-processing in µm³ to finish", context=lambda: page.text("pp-status"))
    assert said in page.text("pp-status"), page.text("pp-status")
    page.wait(lambda: page.text("obj-summary") == summary, 30, "the same objects as the min size in voxels",
              context=lambda: page.text("obj-summary"))


def export(page: Page, downloads: Path, what: str = "segmentation", fmt: str = "tiff",
           label: str = "TIFF (Fiji / ImageJ)") -> Path:
    """Export ``what`` as ``fmt``; the file lands in the browser's download folder."""
    page.tab("Export")
    choose_dropdown(page, "exp-what", None, value=what)
    choose_dropdown(page, "exp-format", label)
    before = set(downloads.iterdir())
    status = page.text("exp-status")
    page.click("exp-run-btn")
    page.wait(lambda: page.text("exp-status") != status and
              ("Exported" in page.text("exp-status") or "Failed" in page.text("exp-status")),
              JOB_TIMEOUT["export"], "the export job to finish", context=page.page_summary)
    assert "Failed" not in page.text("exp-status"), page.text("exp-status")

    def landed():
        new = [p for p in set(downloads.iterdir()) - before if not p.name.endswith((".crdownload", ".tmp"))]
        return new[0] if new and new[0].stat().st_size > 0 else None

    path = page.wait(landed, 30, f"the {fmt} download in {downloads}",
                     context=lambda: f"files: {[p.name for p in downloads.iterdir()]}")
    size = -1
    while path.stat().st_size != size:     # finished writing
        size = path.stat().st_size
        time.sleep(0.2)
    return path


def add_volume_by_path(page: Page, path: str) -> None:
    """Type a server path in the Data panel and press Add; the new volume becomes the selected one."""
    name = Path(path).stem
    page.set_input("volume-path-input", path)
    page.click("volume-add-btn")
    page.wait(lambda: name in page.text("volume-select"), 60, f"the Data panel to add and select {path}",
              context=lambda: f"volume: {page.text('volume-select')!r}; {page.page_summary()}")


def job_row(page: Page, job_id: int) -> dict[str, str]:
    """The jobs list's row of job ``job_id`` ({} when it is not listed)."""
    return next((j for j in page.jobs() if j.get("#") == str(job_id)), {})


def cancel_job(page: Page, job_id: int) -> None:
    """Press the jobs list's Cancel button of job ``job_id``."""
    def button():
        for b in page.css("#jobs-table button"):
            if '"job-cancel"' in (b.get_attribute("id") or "") and f'"index":{job_id}' in b.get_attribute("id"):
                return b
        return None

    page.click_el(page.wait(button, 20, f"the Cancel button of job {job_id} in the jobs list",
                            context=lambda: str(page.jobs())))


def choose_dropdown(page: Page, id_: str, label: str | None, value: str | None = None) -> None:
    """Pick an option of a dcc.Dropdown by its visible label (or, for ``value``, via its label lookup)."""
    from selenium.webdriver.common.by import By

    root = page.el(id_)
    page.d.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", root)
    if value is not None and label is None:
        label = {"segmentation": "Segmentation (binary)", "instances": "Instance labels",
                 "labels": "Sparse labels (painted)", "objects": "Object table"}.get(value, value)
    current = root.text.strip()
    if current == label:
        return
    root.click()
    opt = page.wait(lambda: [o for o in page.d.find_elements(By.CSS_SELECTOR, "[role=option], .dash-dropdown-option")
                             if o.text.strip() == label], 10, f"option {label!r} of #{id_}")
    opt[0].click()
    page.wait(lambda: page.el(id_).text.strip().startswith(label), 10, f"#{id_} to show {label!r}")
    _close_menus(page)


def _close_menus(page: Page) -> None:
    """Wait for an open dropdown menu to close (Escape if it stays): under load it can still cover the next
    button when the value already shows, and the click lands on its search box."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def closed() -> bool:
        return not any(e.is_displayed() for e in page.d.find_elements(
            By.CSS_SELECTOR, "[role=option], .dash-dropdown-option, .dash-dropdown-search"))

    try:
        page.wait(closed, 3, "the dropdown menu to close")
    except AssertionError:
        page.d.switch_to.active_element.send_keys(Keys.ESCAPE)
        page.wait(closed, 5, "the dropdown menu to close after Escape")


# --- active-learning queue -------------------------------------------------------------------------
def queue_cards(page: Page) -> list[dict]:
    """The suggestion cards: {rank, z, y, x, status} in queue order."""
    out = []
    for card in page.css("#al-queue .card"):
        m = re.search(r"#(\d+)\s+z=(\d+)\s+y=(\d+)\s+x=(\d+)", card.text)
        if not m:
            continue
        status = "labeled" if "labeled" in card.text else ("skipped" if "skipped" in card.text else "todo")
        out.append({"rank": int(m.group(1)), "z": int(m.group(2)), "y": int(m.group(3)), "x": int(m.group(4)),
                    "status": status})
    return out


def label_suggestion(page: Page, gt: np.ndarray, patch: int, index: int = 0) -> dict:
    """Click a suggestion: the viewer jumps to its slice with an outline; one stroke inside marks it labeled."""
    page.tab("Active learning")
    card = queue_cards(page)[index]
    page.click_el(page.css("#al-queue img")[index])
    z, y, x = card["z"], card["y"], card["x"]
    page.wait(lambda: current_slice(page) == z, 20, f"the viewer to jump to the suggestion's slice z={z}",
              context=lambda: page.slice_image_href())
    page.wait(lambda: page.d.execute_script(
        "const gd = document.querySelector('#viewer-graph .js-plotly-plot');"
        "return (gd.layout.shapes || []).some(s => s.type === 'rect');"), 20, "the suggestion's outline on the canvas")
    box = gt[z, y:y + patch, x:x + patch]
    free = ndimage.distance_transform_edt(~box) > 3
    length = max(8, patch // 3)
    hit = _free_run(free, patch // 2, 4, length, reach=patch // 2)
    name = "background"
    if hit is None:                                      # a patch full of objects: paint one of them
        hit, name = _free_run(box, patch // 2, 4, length, reach=patch // 2), "mitochondria"
    assert hit, f"no room for a stroke inside the suggested patch at z={z} y={y} x={x}"
    r, c = hit
    paint_class(page, name, [[(x + c, y + r), (x + c + length // 2, y + r), (x + c + length, y + r)]])
    page.wait(lambda: queue_cards(page)[index]["status"] == "labeled", 20,
              "the painted suggestion to show as labeled in the queue", context=lambda: str(queue_cards(page)))
    return card


# --- what must survive a reload ------------------------------------------------------------------------
def snapshot(page: Page) -> dict:
    """What the page shows about the project's state (each tab visited)."""
    snap = {"counts": page.counts()}
    page.tab("Active learning")
    snap["queue"] = page.wait(lambda: queue_cards(page), 30, "the suggestion queue")
    page.tab("Training")
    snap["versions"] = [r["id"] for r in page.wait(lambda: page.table_rows("tr-versions-table"), 30,
                                                   "the model versions table")]
    snap["live_title"] = page.wait(lambda: page.figure("tr-live-graph") and page.text("tr-live-title") or None, 30,
                                   "the live training figure")
    page.tab("Results")
    snap["objects"] = page.wait(lambda: page.table_rows("obj-table"), 30, "the object table")
    snap["summary"] = page.text("obj-summary")
    snap["jobs"] = {(j["#"], j["kind"], j["state"]) for j in page.jobs()}
    return snap


def show_prediction(page: Page, steps: int = 10) -> None:
    """Raise the prediction overlay's opacity with the keyboard (slider thumb, arrow right)."""
    from selenium.webdriver.common.keys import Keys

    thumb = page.d.find_element("css selector", "#overlay-prediction-opacity [role=slider]")
    page.click_el(thumb)
    for _ in range(steps):
        thumb.send_keys(Keys.ARROW_RIGHT)
    page.wait(lambda: any("/overlay/" in h and "/prediction/" in h for h in page.image_hrefs()), 20,
              "the prediction overlay image on the canvas", context=lambda: str(page.image_hrefs()))


def fetch_overlay(base_url: str, href: str, cookies: dict | None = None) -> np.ndarray:
    """The overlay PNG the canvas shows at ``href``, as RGBA pixels (``cookies``: a signed-in session's)."""
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
    with urllib.request.urlopen(urllib.request.Request(base_url + href, headers=headers), timeout=60) as resp:
        return np.asarray(Image.open(io.BytesIO(resp.read())).convert("RGBA"))


def sign_in(page: Page, name: str, password: str) -> None:
    """Fill in and send the shared mode's sign-in form."""
    page.el("login-name").clear()
    page.el("login-name").send_keys(name)
    page.el("login-password").send_keys(password)
    page.submit("login-submit")


def browser_cookies(page: Page) -> dict:
    """The browser's cookies (a signed-in session in shared mode), for fetching what the page shows."""
    return {c["name"]: c["value"] for c in page.d.get_cookies()}


def open_app(page: Page, url: str, shared: bool) -> None:
    """Open the app, signing in as ``procs.SHARED_USER`` first in shared mode."""
    if shared:
        page.d.get(url + "/")
        page.wait(lambda: page.css("#login-form"), 30, "the sign-in form")
        sign_in(page, procs.SHARED_USER, procs.SHARED_PASSWORD)
    open_page(page)


def shown_overlay(page: Page, base_url: str, kind: str, wait_s: float = 60) -> np.ndarray:
    """Wait until the canvas shows the ``kind`` overlay (no slider touched) and return its pixels."""
    href = page.wait(lambda: next((h for h in page.image_hrefs() if "/overlay/" in h and f"/{kind}/" in h), None),
                     wait_s, f"the {kind} overlay on the canvas", context=lambda: str(page.image_hrefs()))
    return fetch_overlay(base_url, href, browser_cookies(page))


# --- live mode ------------------------------------------------------------------------------------------
LIVE_WAIT_S = 90      # generous: one update takes a few seconds on a quiet machine, CI may be busy


def live_href(page: Page) -> str | None:
    """The prediction overlay's URL when it shows live mode's view (``live=<rev>``)."""
    return next((h for h in page.image_hrefs() if "/prediction/" in h and "live=" in h), None)


def live_rev(href: str | None) -> int | None:
    m = re.search(r"live=(\d+)", href or "")
    return int(m.group(1)) if m else None


def wait_live_update(page: Page, after: int | None) -> str:
    """Wait for the prediction overlay to show a live view newer than revision ``after``; its URL."""
    return page.wait(lambda: (live_rev(live_href(page)) or 0) > (after or 0) and live_href(page), LIVE_WAIT_S,
                     "the prediction overlay to show a new live update",
                     context=lambda: f"status {page.text('live-status')!r}; images {page.image_hrefs()}")
