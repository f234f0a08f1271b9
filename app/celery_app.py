"""The Celery instance on Redis (APP_JOB_BACKEND=celery): one factory, used by the web side and the worker.

Importing this module has no side effect; the worker's entry module is ``app.worker``.
"""
from __future__ import annotations

from app.config import Config


def make_celery(config: Config):
    """A Celery instance on Redis (broker and result backend)."""
    from celery import Celery

    app = Celery("activeseg", broker=config.redis_url, backend=config.redis_url)
    # A worker busy with a long job must not hold tasks an idle worker could run: by default it reserves 4
    # per process, and a segmentation's z-chunks then waited behind their own coordinator (seen in CI).
    app.conf.worker_prefetch_multiplier = 1
    return app
