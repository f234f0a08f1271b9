"""Headless Chromium driven by Selenium, plus a small page object for the ActiveSeg page.

Every wait is explicit (poll a condition with a deadline); a timeout raises an
AssertionError that names what was awaited and what the page showed instead.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from selenium import webdriver
from selenium.common.exceptions import MoveTargetOutOfBoundsException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1680, 1400)   # headless viewport = 1680 x ~1257
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--enable-unsafe-swiftshader",            # software WebGL for the 3D (Mesh3d) view
                "--hide-scrollbars", "--force-device-scale-factor=1",
                # a page Chromium deems hidden or occluded gets its timers throttled (once a second, after
                # 5 minutes once a minute): every dcc.Interval poll (live curves, job status) would lag the waits
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows")


def chromium_available() -> str | None:
    """None when Chromium + chromedriver are installed, else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists() and not shutil.which(Path(p).name)]
    return f"not installed: {', '.join(missing)} (scripts/install.sh installs them)" if missing else None


def make_driver(profile_dir: Path, download_dir: Path) -> webdriver.Chrome:
    """A fresh headless Chromium with its own profile and downloads going to ``download_dir``."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    opts.add_experimental_option("prefs", {
        "download.default_directory": str(download_dir), "download.prompt_for_download": False,
        "download.directory_upgrade": True, "safebrowsing.enabled": False,
    })
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def console_log(driver: webdriver.Chrome) -> str:
    try:
        return "\n".join(f"{e['level']} {e['message']}" for e in driver.get_log("browser"))
    except WebDriverException:
        return ""


class Page:
    """The ActiveSeg page in one browser tab; ids come from layouts/ids.py and layouts/ids_panels.py."""

    def __init__(self, driver: webdriver.Chrome, base_url: str, watch: tuple = ()):
        """``watch``: processes (tests.e2e.procs.Proc) whose death fails any wait at once."""
        self.d, self.url, self.watch = driver, base_url, tuple(watch)

    # --- basics -----------------------------------------------------------------------------------
    def open(self) -> None:
        self.d.get(self.url + "/")
        self.wait(lambda: self.d.execute_script("return !!document.querySelector('#viewer-graph .js-plotly-plot')"),
                  60, "the page with its viewer graph")

    def wait(self, check: Callable[[], Any], timeout: float, what: str, poll: float = 0.2,
             context: Callable[[], str] | None = None) -> Any:
        """The first truthy ``check()`` within ``timeout`` s; else AssertionError naming ``what``."""
        end, last_err = time.monotonic() + timeout, None
        while True:
            for proc in self.watch:
                proc.check_alive()
            try:
                value = check()
                if value:
                    return value
            except (StaleElementReferenceException, WebDriverException) as e:  # re-rendered meanwhile
                last_err = e
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what.rstrip('.')}. "
                                     + self._said(context)
                                     + (f" (last error: {last_err.__class__.__name__})" if last_err else ""))
            time.sleep(poll)

    def _said(self, context: Callable[[], str] | None) -> str:
        """What ``context`` tells of the page; a browser that no longer answers must not hide the timeout."""
        try:
            return context() if context else ""
        except WebDriverException as e:
            return f"(the page could not be read: {e.__class__.__name__})"

    def el(self, id_: str):
        return self.d.find_element(By.ID, id_)

    def css(self, selector: str) -> list:
        return self.d.find_elements(By.CSS_SELECTOR, selector)

    def text(self, id_: str) -> str:
        try:
            return self.d.execute_script("const e = document.getElementById(arguments[0]);"
                                         "return e ? e.innerText : null;", id_) or ""
        except WebDriverException:
            return ""

    def click(self, id_: str) -> None:
        self.wait(lambda: self.el(id_).is_enabled() and self.el(id_).get_attribute("disabled") is None, 30,
                  f"#{id_} to be enabled")
        self.click_el(self.el(id_))

    def submit(self, id_: str, timeout: float = 30) -> None:
        """Click a form's submit button and wait until the browser left the page: a navigation right after
        a bare click can cancel the form's POST before it is sent (a CI failure of the sign-in test)."""
        button = self.el(id_)
        button.click()

        def left() -> bool:
            try:
                button.is_enabled()
                return False
            except StaleElementReferenceException:
                return True
        self.wait(left, timeout, f"the form of #{id_} to be sent")

    def click_el(self, el) -> None:
        """Scroll ``el`` to the middle of the window, then click it like a user."""
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", el)
        el.click()

    def set_input(self, id_: str, value: Any) -> None:
        """Type into a dbc.Input (select all, type the new value, blur)."""
        el = self.el(id_)
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", el)
        el.click()
        el.send_keys(Keys.CONTROL, "a")
        el.send_keys(str(value))
        el.send_keys(Keys.TAB)
        self.wait(lambda: self.el(id_).get_attribute("value") == str(value), 10, f"#{id_} to read {value!r}")

    def tab(self, label: str) -> None:
        """Open a tab of the right-hand panel by its label."""
        links = [a for a in self.css("#right-tabs .nav-link, .nav-tabs .nav-link") if a.text.strip() == label]
        assert links, f"no tab labelled {label!r}"
        self.click_el(links[0])
        self.wait(lambda: "active" in (links[0].get_attribute("class") or ""), 10, f"tab {label!r} to be active")

    def screenshot(self, path: Path, element_id: str | None = None) -> Path:
        """PNG of the window, or of one element (the window grows for the shot when it is taller)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.d.execute_script("document.activeElement && document.activeElement.blur();")
        if not element_id:
            self.d.execute_script("window.scrollTo({top: 0, left: 0, behavior: 'instant'});")
            self.d.save_screenshot(str(path))
            return path
        el = self.el(element_id)
        size = self.d.get_window_size()
        need = self.d.execute_script("return arguments[0].getBoundingClientRect().height;", el)
        inner = self.d.execute_script("return window.innerHeight;")
        grown = need + 40 > inner
        if grown:
            self.d.set_window_size(size["width"], size["height"] + int(need + 40 - inner))
        try:
            self.d.execute_script("arguments[0].scrollIntoView({block: 'start', behavior: 'instant'});", el)
            self.d.execute_async_script(   # two animation frames: plotly/WebGL have redrawn after any resize
                "const done = arguments[arguments.length - 1];"
                "requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 300)));")
            el.screenshot(str(path))
        finally:
            if grown:
                self.d.set_window_size(size["width"], size["height"])
        return path

    def reset_zoom(self) -> None:
        """Plotly's own 'reset axes' button on the viewer's mode bar."""
        btn = self.css("#viewer-graph .modebar-btn[data-val='reset'], "
                       "#viewer-graph .modebar-btn[data-title='Reset axes']")
        assert btn, "the viewer has no 'reset axes' mode bar button"
        self.d.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}));", btn[0])

    def page_summary(self) -> str:
        """Short text of the places that show errors (for timeout messages)."""
        parts = []
        for id_ in ("page-alert", "paint-alert", "viewer-alert", "al-status", "tr-status", "seg-status",
                    "pp-status", "exp-status", "jobs-table"):
            t = self.text(id_).strip()
            if t:
                parts.append(f"#{id_}: {t[:400]!r}")
        parts.append(f"page {self.d.execute_script('return document.visibilityState')}")   # hidden: polls throttled
        return "Page shows: " + "; ".join(parts)

    # --- viewer -------------------------------------------------------------------------------------
    def slice_image_href(self) -> str:
        """href of the raw slice <image> (layout image 0, drawn below the plot)."""
        return self.d.execute_script("""
            const imgs = document.querySelectorAll('#viewer-graph .layer-below .imagelayer image, #viewer-graph image');
            for (const im of imgs) {
                const h = im.getAttribute('href') || im.getAttribute('xlink:href') || '';
                if (h.includes('/tiles/') || h.startsWith('data:')) { return h; }
            }
            return imgs.length ? (imgs[0].getAttribute('href') || imgs[0].getAttribute('xlink:href') || '') : '';
        """) or ""

    def slice_image_loaded(self) -> bool:
        """The raw slice PNG really loaded (an <img> of the same URL decodes with the right size)."""
        href = self.slice_image_href()
        return bool(href) and bool(self.d.execute_async_script("""
            const done = arguments[arguments.length - 1], im = new Image();
            im.onload = () => done(im.naturalWidth > 0); im.onerror = () => done(false); im.src = arguments[0];
        """, href))

    def image_hrefs(self) -> list[str]:
        return self.d.execute_script("""
            return Array.from(document.querySelectorAll('#viewer-graph image'))
                .map(im => im.getAttribute('href') || im.getAttribute('xlink:href') || '');
        """)

    def graph_point_offset(self, x: float, y: float) -> tuple[float, float]:
        """Offset from the graph div's centre (CSS px) of data point (x, y) = (pixel column, row)."""
        return tuple(self.d.execute_script("""
            const gd = document.querySelector('#viewer-graph .js-plotly-plot');
            const fl = gd._fullLayout, r = gd.getBoundingClientRect();
            return [fl.xaxis._offset + fl.xaxis.l2p(arguments[0]) - r.width / 2,
                    fl.yaxis._offset + fl.yaxis.l2p(arguments[1]) - r.height / 2];
        """, x, y))

    def point_in_view(self, x: float, y: float) -> dict:
        """Where data point (x, y) falls in the plot area now, with the axes' ranges (for messages)."""
        return self.d.execute_script("""
            const gd = document.querySelector('#viewer-graph .js-plotly-plot');
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const px = xa.l2p(arguments[0]), py = ya.l2p(arguments[1]);
            return {inside: px >= 0 && px <= xa._length && py >= 0 && py <= ya._length,
                    x_range: xa.range, y_range: ya.range};
        """, x, y)

    def hover(self, x: float, y: float, tries: int = 4) -> None:
        """Move the mouse over data point (x=column, y=row) of the viewer, without pressing.

        Panels that finish rendering (the 3D view, the object table) can shift the page between
        the scroll and the move, and a late figure update can bring back a zoom: the move is then
        retried from a fresh scroll, with the axes reset when the point is out of the plot area.
        """
        where = {}
        for attempt in range(tries):
            where = self.point_in_view(x, y)
            if not where["inside"]:
                self.reset_zoom()
                time.sleep(1.0)
                continue
            gd = self.d.find_element(By.CSS_SELECTOR, "#viewer-graph .js-plotly-plot")
            self.d.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", gd)
            cx, cy = (int(round(v)) for v in self.graph_point_offset(x, y))
            try:
                ActionChains(self.d, duration=25).move_to_element(gd).move_by_offset(cx, cy).move_by_offset(1, 0) \
                    .perform()
                return
            except MoveTargetOutOfBoundsException:
                where = {**self.point_in_view(x, y), "offset": [cx, cy],
                         "window": self.d.execute_script("return [window.innerWidth, window.innerHeight];")}
                time.sleep(1.0)
        raise AssertionError(f"could not move the mouse over ({x}, {y}) in {tries} tries: {where}")

    def dragmode(self) -> str:
        return self.d.execute_script(
            "const gd = document.querySelector('#viewer-graph .js-plotly-plot');"
            "return gd && gd._fullLayout ? gd._fullLayout.dragmode : '';") or ""

    def paint(self, points: list[tuple[float, float]], steps_between: int = 4) -> None:
        """Press the mouse at ``points[0]`` (x=column, y=row), drag through the others, release.

        Real pointer events (ActionChains): to the graph's centre, by an offset to the start,
        click_and_hold, move_by_offset in small steps, release. (``move_to_element_with_offset``
        is avoided: Selenium 4.2 measures it from the corner, later versions from the centre.)
        """
        gd = self.d.find_element(By.CSS_SELECTOR, "#viewer-graph .js-plotly-plot")
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", gd)
        pos = [tuple(int(round(v)) for v in self.graph_point_offset(x, y)) for x, y in points]
        chain = ActionChains(self.d, duration=25)
        cx, cy = pos[0]
        chain.move_to_element(gd).move_by_offset(cx, cy).click_and_hold()
        for tx, ty in pos[1:]:
            sx, sy = cx, cy
            for i in range(1, steps_between + 1):
                nx, ny = sx + round((tx - sx) * i / steps_between), sy + round((ty - sy) * i / steps_between)
                chain.move_by_offset(nx - cx, ny - cy)
                cx, cy = nx, ny
        chain.release().perform()

    def pick_class(self, name: str) -> None:
        """Click the class's paint button; the brush then draws in that class's colour (Data panel)."""
        buttons = [b for b in self.css("#paint-class-buttons button") if b.text.strip() == name]
        shown = [b.text for b in self.css("#paint-class-buttons button")]
        assert buttons, f"no paint button for class {name!r}: {shown}"
        color = self.class_color(name)
        self.click_el(buttons[0])
        self.wait(lambda: self.brush_color() == color, 10, f"the brush to take the colour {color} of class {name!r}",
                  context=lambda: f"brush colour {self.brush_color()!r}")

    def class_color(self, name: str) -> str:
        """The colour the Data panel's class list gives class ``name`` (lower-case #rrggbb)."""
        color = self.d.execute_script("""
            const names = document.querySelectorAll(`input[id*='"type":"class-name"']`);
            for (const n of names) {
                if (n.value.trim() === arguments[0]) {
                    const idx = JSON.parse(n.id).index;
                    const c = Array.from(document.querySelectorAll(`input[id*='"type":"class-color"']`))
                        .find(e => JSON.parse(e.id).index === idx);
                    return c ? c.value : null;
                }
            }
            return null;
        """, name)
        assert color, f"class {name!r} is not in the Data panel's class list"
        return color.lower()

    def brush_color(self) -> str:
        return (self.d.execute_script(
            "const gd = document.querySelector('#viewer-graph .js-plotly-plot');"
            "return gd && gd.layout.newshape && gd.layout.newshape.line ? gd.layout.newshape.line.color : '';")
            or "").lower()

    def counts(self) -> dict[str, int]:
        """Labeled pixels per class name as shown under the viewer ("name: 1,234 px")."""
        text = self.text("paint-counts")
        return {m.group(1).strip(): int(m.group(2).replace(",", ""))
                for m in re.finditer(r"([^\n:■]+):\s*([\d,]+)\s*px", text)}

    # --- tables and graphs ---------------------------------------------------------------------------
    def table_rows(self, id_: str) -> list[dict[str, str]]:
        """A dash DataTable's visible rows as {column name: cell text}."""
        return self.d.execute_script("""
            const root = document.getElementById(arguments[0]);
            if (!root) { return []; }
            const heads = Array.from(root.querySelectorAll('th.dash-header')).map(h => h.innerText.trim());
            return Array.from(root.querySelectorAll('tr')).filter(tr => tr.querySelector('td.dash-cell'))
                .map(tr => { const o = {}; Array.from(tr.querySelectorAll('td.dash-cell'))
                    .forEach((td, i) => { o[heads[i] || i] = td.innerText.trim(); }); return o; });
        """, id_) or []

    def figure(self, id_: str) -> dict:
        """The plotly figure (data + layout) currently drawn in dcc.Graph ``id_``."""
        return json.loads(self.d.execute_script("""
            const gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
            if (!gd || !gd.data) { return 'null'; }
            return JSON.stringify({data: gd.data.map(t => ({type: t.type, name: t.name,
                                                            n: (t.x || t.i || []).length})),
                                   title: ((gd.layout.title || {}).text) || gd.layout.title || ''});
        """, id_) or "null") or {}

    def jobs(self) -> list[dict[str, str]]:
        """The jobs list rows: {#, kind, state, progress, created, error}."""
        return self.d.execute_script("""
            const t = document.querySelector('#jobs-table table');
            if (!t) { return []; }
            const heads = Array.from(t.querySelectorAll('thead th')).map(h => h.innerText.trim());
            return Array.from(t.querySelectorAll('tbody tr')).map(tr => {
                const o = {}; Array.from(tr.children).forEach((td, i) => { o[heads[i]] = td.innerText.trim(); });
                return o; });
        """) or []
