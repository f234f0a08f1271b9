"""WSGI entry: ``gunicorn app.wsgi:server`` (config from APP_* variables; demo ensured once)."""
from __future__ import annotations

from app.config import Config
from app.demo import ensure_demo
from app.server import create_app

config = Config.from_env()
ensure_demo(config, config.demo, pretrain=config.pretrain_auto)
app = create_app(config)
server = app.server
