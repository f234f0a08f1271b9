"""Undo and redo from the keyboard in a real Chromium: Ctrl+Z takes the stroke back on the slice in
view, Ctrl+Shift+Z and Ctrl+Y paint it again; the counts under the viewer follow each step."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from tests.e2e import flows, procs
from tests.e2e.browser import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")]


def _keys(page: Page, key: str, shift: bool = False) -> None:
    chain = ActionChains(page.d).key_down(Keys.CONTROL)
    chain = chain.key_down(Keys.SHIFT) if shift else chain
    chain = chain.send_keys(key)
    chain = chain.key_up(Keys.SHIFT) if shift else chain
    chain.key_up(Keys.CONTROL).perform()


def test_ctrl_z_undoes_and_ctrl_shift_z_or_ctrl_y_redo(workspace, processes, tmp_path, driver):
    server, url = procs.start_dev_server(workspace, tmp_path, processes.add)
    page = Page(driver, url, watch=(server,))
    flows.open_page(page)
    _, gt = procs.demo_ground_truth(workspace)
    z = flows.current_slice(page)
    painted = flows.paint_class(page, "mitochondria", flows.fg_strokes(gt[z], n=1))
    page.d.find_element("tag name", "body").click()          # keys go to the page, not a text box

    def count() -> int:
        return page.counts().get("mitochondria", 0)

    _keys(page, "z")
    page.wait(lambda: count() == 0, 20, "Ctrl+Z to take the stroke back", context=lambda: str(page.counts()))
    assert "Undid" in page.text("paint-alert")
    _keys(page, "z", shift=True)
    page.wait(lambda: count() == painted, 20, "Ctrl+Shift+Z to paint it again", context=lambda: str(page.counts()))
    assert "Painted again" in page.text("paint-alert")
    _keys(page, "z")
    page.wait(lambda: count() == 0, 20, "Ctrl+Z again")
    _keys(page, "y")
    page.wait(lambda: count() == painted, 20, "Ctrl+Y to paint it again", context=lambda: str(page.counts()))
