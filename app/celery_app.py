"""Celery app for ``celery -A app.celery_app worker`` (APP_JOB_BACKEND=celery, REDIS_URL).

The worker must register the same background callbacks as the web process, so importing
this module builds the Dash app from the same APP_* environment; it also registers the task
that runs the jobs the app starts by itself (``app.background``).
"""
from __future__ import annotations

from app.config import Config


def make_celery(config: Config):
    """A Celery instance on Redis (broker and result backend)."""
    from celery import Celery

    return Celery("activeseg", broker=config.redis_url, backend=config.redis_url)


_config = Config.from_env()
if _config.job_backend == "celery":
    from app.server import create_app

    _dash_app = create_app(_config)
    celery_app = _dash_app._background_manager.handle  # the instance the callbacks were registered on
else:  # importable without Redis (tests, docs); a worker needs APP_JOB_BACKEND=celery
    celery_app = make_celery(_config)
app = celery_app

# jobs the app starts by itself (pre-training a new volume): app.background.launch sends this task
from app import background  # noqa: E402

celery_app.task(name=background.TASK_NAME)(background.run_task)
