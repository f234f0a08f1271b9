"""Shared mode in a real Chromium: an admin adds a user with the CLI, the user signs in and out.

``python -m app`` with APP_AUTH=1: the page sends a stranger to the sign-in form, a wrong
password is answered on the form, the right one opens the app with the user's name in the
bar, and after signing out the page and Dash's endpoints are closed again.
"""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from selenium.webdriver.common.by import By

from tests.e2e import flows, procs
from tests.e2e.browser import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")]
SECRET = "e2e-secret-0123456789abcdef"
PASSWORD = "mitochondria-42"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def _form_shown(page: Page) -> bool:
    return bool(page.css("#login-form"))


def test_a_user_added_by_the_cli_signs_in_and_out(workspace, processes, tmp_path, driver):
    short = procs.users_cli(workspace, "add", "ann", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr and "Traceback" not in short.stderr
    added = procs.users_cli(workspace, "add", "ann", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0 and "added user ann" in added.stdout, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    assert "ann" in procs.users_cli(workspace, "list").stdout

    server, url = procs.start_dev_server(workspace, tmp_path, processes.add, ready_path="/healthz",
                                         env_extra={"APP_AUTH": "1", "APP_SECRET_KEY": SECRET})
    assert _status(url + "/_dash-layout") == 401
    page = Page(driver, url, watch=(server,))
    driver.get(url + "/")
    page.wait(lambda: _form_shown(page), 30, "the sign-in form for a stranger")

    flows.sign_in(page, "ann", "not the password")
    page.wait(lambda: page.css("#login-error") and "wrong password" in page.text("login-error"), 20,
              "the form to say the password is wrong")

    flows.sign_in(page, "ann", PASSWORD)
    flows.open_page(page)
    assert "signed in as ann" in page.text("page-account")
    page.wait(lambda: "no owner" in page.text("share-info"), 20, "the Data panel to say who sees the demo project")

    page.d.find_element(By.ID, "page-sign-out").click()
    page.wait(lambda: _form_shown(page), 30, "the sign-in form after signing out")
    driver.get(url + "/")
    page.wait(lambda: _form_shown(page), 30, "the page closed again after signing out")
    assert PASSWORD not in server.log(200000), "the password reached the server log"
    assert "failed login for 'ann'" in server.log(200000)
