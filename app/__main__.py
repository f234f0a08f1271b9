"""``python -m app``: start ActiveSeg on http://127.0.0.1:8050 with a ready demo project.

``python -m app users ...`` manages the accounts of the lab-shared mode (``app.users_cli``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

from app.config import Config
from app.errors import UserError
from app.starting import StartingServer

EXIT_BAD_SETTING = 2     # as argparse exits on a bad option


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--workspace", default=None, help="folder for the SQLite file and arrays (APP_WORKSPACE)")
    p.add_argument("--demo", default=None, help="'synthetic' (default), a volume path, or 'none' (APP_DEMO)")
    p.add_argument("--demo-gt", default=None, help="dense ground-truth labels for a --demo path (optional)")
    p.add_argument("--debug", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
    config = Config.from_env(workspace=args.workspace, demo=args.demo)
    if config.job_backend == "celery":
        env = Config.from_env()
        if (config.workspace, config.demo) != (env.workspace, env.demo):
            raise ValueError("with APP_JOB_BACKEND=celery the workers read only the environment: "
                             "set APP_WORKSPACE / APP_DEMO instead of --workspace / --demo")
    demo = config.demo
    if demo and demo.lower() not in ("synthetic", "none"):
        # a path given by whoever starts the server is trusted: its folder becomes a data root
        parent = Path(demo).expanduser().resolve().parent
        if not any(parent == r or r in parent.parents for r in config.data_roots):
            config = config.with_(data_roots=config.data_roots + (parent,))
    return config


def refuse(message: object) -> NoReturn:
    """A bad setting is the starter's to fix: one line naming it on stderr (no traceback), exit code 2."""
    print(f"python -m app: {' '.join(str(message).splitlines())}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_SETTING)


def checked_config(args: argparse.Namespace) -> Config:
    """The Config of the command line and environment; a bad setting ends the start with one line."""
    try:
        return config_from_args(args)
    except (TypeError, ValueError) as exc:
        refuse(exc)


def listen(host: str, port: int) -> StartingServer:
    """Bind the port before the heavy imports, so a browser gets the "starting" page at once."""
    try:
        server = StartingServer(host, port).start()
    except OSError as exc:
        refuse(f"cannot listen on {host}:{port}: {exc.strerror or exc} (is ActiveSeg already running? try --port)")
    return server


def build_app(config: Config, args: argparse.Namespace):
    """The Dash app on a ready workspace; a first start's demo is generated after it, in a thread."""
    from app.db import database
    from app.demo import DemoPreparation, ensure_demo, needs_generation
    from app.server import create_app
    from app.workspace import Workspace

    preparing = None
    Workspace(config.workspace).ensure()
    database(config)
    if needs_generation(config):          # first start: generate while the server already answers
        preparing = DemoPreparation(config, pretrain=config.pretrain_auto)
    else:
        try:
            ensure_demo(config, config.demo, args.demo_gt, pretrain=config.pretrain_auto)
        except (UserError, ValueError, OSError) as exc:     # unreadable, missing, or no finite grey value
            refuse(f"demo volume (APP_DEMO / --demo): {exc}")
    app = create_app(config, preparing=preparing)
    if preparing is not None:
        preparing.start()
    return app


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["users"]:
        from app.users_cli import main as users_main

        return users_main(argv[1:])
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.debug:                          # Flask's reloader binds the port itself
        config = checked_config(args)
        return build_app(config, args).run(host=args.host, port=args.port, debug=True)
    server = listen(args.host, args.port)   # first: reading the ML settings alone imports torch
    try:
        config = checked_config(args)
        app = build_app(config, args)
    except BaseException:
        server.stop()
        raise
    logging.getLogger(__name__).info("ActiveSeg on http://%s:%d  (workspace %s)", args.host, server.port,
                                     config.workspace)
    server.serve(app.server)


if __name__ == "__main__":
    main()
