"""Celery worker entry: ``celery -A app.worker worker`` (the role that owns the GPU).

The web side never imports this module. The worker reads the same ``APP_*`` environment as the
web (``Config.from_env``) and nothing else: give both roles the same variables (compose does)
and they agree on the workspace, the models and the settings. It builds the Dash app once so
the background callbacks are registered on its Celery instance, and adds the tasks that run
the jobs the app starts by itself (``app.background``), the z-chunks of a whole-volume
prediction (``app.services.chunks``) and slice previews (``app.services.previews``), so the web
never loads a model.
"""
from __future__ import annotations

from app import background
from app.__main__ import refuse
from app.config import Config


def build_worker(config: Config):
    """The Celery app of a worker for ``config`` (its background callbacks and detached-job task)."""
    if config.job_backend != "celery":
        refuse("the worker needs APP_JOB_BACKEND=celery (and REDIS_URL), as the web side has")
    from app.server import create_app
    from app.services import chunks, previews

    celery_app = create_app(config)._background_manager.handle   # the instance the callbacks were registered on

    @celery_app.task(name=background.TASK_NAME)
    def detached_job(job_id: int) -> str | None:
        return background.run_task(config, job_id)

    @celery_app.task(name=background.PREVIEW_TASK)
    def slice_preview(volume_id: int, model_id: int, z: int) -> str:
        return previews.make(config, volume_id, model_id, z)

    @celery_app.task(name=background.CHUNK_TASK)
    def predict_chunk(volume_id: int, model_id: int, pred_path: str, z0: int, z1: int) -> str:
        return chunks.run_chunk(config, volume_id, model_id, pred_path, z0, z1)

    return celery_app


try:
    _config = Config.from_env()
except (TypeError, ValueError) as exc:
    refuse(exc)
app = celery_app = build_worker(_config)
