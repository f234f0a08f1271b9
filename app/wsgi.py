"""WSGI entry: ``gunicorn app.wsgi:server`` (config from APP_* variables; demo ensured once).

A bad setting (e.g. shared mode without APP_SECRET_KEY) ends the start with one line, as
``python -m app`` does, not with a traceback per gunicorn worker.
"""
from __future__ import annotations

from app.__main__ import refuse
from app.config import Config
from app.demo import ensure_demo
from app.server import create_app

try:
    config = Config.from_env()
except (TypeError, ValueError) as exc:
    refuse(exc)
ensure_demo(config, config.demo, pretrain=config.pretrain_auto)
app = create_app(config)
server = app.server
