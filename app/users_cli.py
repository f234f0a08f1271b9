"""``python -m app users add|remove|passwd|list|token|share|unshare|give``: accounts and project rights.

The workspace comes from ``--workspace`` or ``APP_WORKSPACE`` (the server's). Passwords are read
from the terminal (asked twice) or, for scripts, from stdin with ``--password-stdin``; they are
never echoed or logged. A bad name, a short password or an unknown user ends with one line on
stderr and exit code 1.
"""
from __future__ import annotations

import argparse
import getpass
import sys

from app.config import Config
from app.errors import UserError

EXIT_USER_ERROR = 1


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app users", description=__doc__.splitlines()[0])
    p.add_argument("--workspace", default=None, help="the server's workspace (APP_WORKSPACE)")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("add", "add a user"), ("passwd", "set a user's password")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("name")
        cmd.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    remove = sub.add_parser("remove", help="remove a user (their sessions and API token stop working)")
    remove.add_argument("name")
    remove.add_argument("--give-to", default=None, help="the user who gets their projects (needed if they own any)")
    sub.add_parser("list", help="list the users and the projects they own")
    sub.add_parser("token", help="issue a new API token (replaces the old one); printed once").add_argument("name")
    share = sub.add_parser("share", help="let a user see a project (and change it with --edit)")
    share.add_argument("project")
    share.add_argument("name")
    share.add_argument("--edit", action="store_true", help="may paint, train and segment too (default: read only)")
    unshare = sub.add_parser("unshare", help="take a shared project away from a user")
    unshare.add_argument("project")
    unshare.add_argument("name")
    give = sub.add_parser("give", help="make a user the owner of a project (e.g. one made in single-user mode)")
    give.add_argument("project")
    give.add_argument("name")
    return p.parse_args(argv)


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat: ") != first:
        raise UserError("the two passwords differ; nothing was changed")
    return first


def run(args: argparse.Namespace, config: Config) -> str:
    """Do the command; returns the line to print."""
    from app.services import sharing, users

    if args.command == "add":
        users.add_user(config, args.name, read_password(args.password_stdin))
        return f"added user {args.name}"
    if args.command == "passwd":
        users.set_password(config, args.name, read_password(args.password_stdin))
        return f"password of {args.name} changed; their browsers must sign in again"
    if args.command == "remove":
        users.remove_user(config, args.name, args.give_to)
        return f"removed user {args.name}" + (f"; their projects now belong to {args.give_to}" if args.give_to else "")
    if args.command == "share":
        sharing.share(config, args.project, args.name, edit=args.edit)
        return f"{args.project!r} shared with {args.name} ({'read and edit' if args.edit else 'read only'})"
    if args.command == "unshare":
        sharing.unshare(config, args.project, args.name)
        return f"{args.project!r} no longer shared with {args.name}"
    if args.command == "give":
        sharing.give(config, args.project, args.name)
        return f"{args.project!r} now belongs to {args.name}"
    if args.command == "token":
        token = users.new_token(config, args.name)
        return f"API token of {args.name} (shown once; send it as 'Authorization: Bearer <token>'):\n{token}"
    rows = users.list_users(config)
    if not rows:
        return "no users yet: python -m app users add NAME"
    return "\n".join(f"{r['name']}\tsince {r['created']}\t{'API token' if r['api_token'] else 'no token'}\t"
                     f"owns: {', '.join(sharing.owned_projects(config, r['name'])) or '-'}" for r in rows)


def main(argv) -> None:
    args = parse_args(argv)
    try:
        config = Config.from_env(workspace=args.workspace)
        print(run(args, config))
    except (UserError, ValueError) as exc:
        print(f"python -m app users: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except (KeyboardInterrupt, EOFError):
        print("python -m app users: cancelled; nothing was changed", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
