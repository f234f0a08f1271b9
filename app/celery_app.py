"""The Celery instance on Redis (APP_JOB_BACKEND=celery): one factory, used by the web side and the worker.

Importing this module has no side effect; the worker's entry module is ``app.worker``.
"""
from __future__ import annotations

from app.config import Config


def make_celery(config: Config):
    """A Celery instance on Redis (broker and result backend)."""
    from celery import Celery

    return Celery("activeseg", broker=config.redis_url, backend=config.redis_url)
