"""``python -m app users``: accounts and project rights from the shell, each problem one line (exit 1)."""
from __future__ import annotations

import io

import pytest

from app.access import acting_as
from app.services import projects, sharing, users
from app.users_cli import main

SECRET = "0123456789abcdef-test-secret"


def _run(config, capsys, monkeypatch, *argv, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        main(["--workspace", str(config.workspace), *argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_add_share_give_and_remove_from_the_shell(config, capsys, monkeypatch):
    assert _run(config, capsys, monkeypatch, "add", "ann", "--password-stdin", stdin="ann-password\n")[0] == 0
    assert _run(config, capsys, monkeypatch, "add", "bob", "--password-stdin", stdin="bob-password\n")[0] == 0
    shared = config.with_(auth_enabled=True, secret_key=SECRET)
    ann = users.verify_password(shared, "ann", "ann-password")
    with acting_as(ann):
        projects.create_project(shared, "ann's")
    key = users.open_session(shared, ann)
    code, out, _ = _run(config, capsys, monkeypatch, "passwd", "ann", "--password-stdin", stdin="ann-password-2\n")
    assert code == 0 and "sign in again" in out
    assert users.account_for_session(shared, ann.id, key) is None, "a browser kept the old password's sign-in"
    code, out, _ = _run(config, capsys, monkeypatch, "share", "ann's", "bob", "--edit")
    assert code == 0 and "read and edit" in out
    assert sharing.project_sharing(config, projects.find_project(config, "ann's")["id"])["shares"] == \
        [{"name": "bob", "edit": True}]
    code, _, err = _run(config, capsys, monkeypatch, "remove", "ann")
    assert code == 1 and "--give-to" in err and len(err.strip().splitlines()) == 1
    assert _run(config, capsys, monkeypatch, "remove", "ann", "--give-to", "bob")[0] == 0
    assert "owns: ann's" in _run(config, capsys, monkeypatch, "list")[1]
    assert "ann-password" not in capsys.readouterr().out


@pytest.mark.parametrize("argv, stdin, words", [
    (("add", "bad name!", "--password-stdin"), "long-enough\n", "user name"),
    (("add", "carl", "--password-stdin"), "short\n", "at least 8"),
    (("passwd", "nobody", "--password-stdin"), "long-enough\n", "no user named 'nobody'"),
    (("share", "no such project", "nobody"), "", "no project named"),
    (("token", "nobody"), "", "no user named"),
])
def test_bad_commands_are_one_line(config, capsys, monkeypatch, argv, stdin, words):
    code, out, err = _run(config, capsys, monkeypatch, *argv, stdin=stdin)
    assert code == 1 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
