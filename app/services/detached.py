"""Segmentation and training started without a page (the REST API): runners for ``app.background``.

A runner gets the recorded job row; its ``params`` are the ones the page's callbacks record for
the same job kind, and it runs the same service function through ``jobs.run_job``, so a job
started by a script looks, reports progress, cancels and fails exactly like one from the page.
"""
from __future__ import annotations

from functools import partial

from app import jobs
from app.config import Config
from app.services import segmentation, training
from ml.progress import CancelFn


def segment(config: Config, job: dict, cancel: CancelFn = None) -> jobs.JobOutcome:
    """params ``{volume_id, mc}`` and the post-processing settings (as ``callbacks.results.run_segment``)."""
    p = job["params"]
    return jobs.run_job(config, "segment", job["project_id"], partial(segmentation.segment_and_measure, config),
                        cancel=cancel, job_id=job["id"], volume_id=int(p["volume_id"]), mc=bool(p.get("mc")),
                        settings=p)


def train(config: Config, job: dict, cancel: CancelFn = None) -> jobs.JobOutcome:
    """params ``{parent_id, epochs, lr, budget}`` (as ``callbacks.training.run_training``)."""
    p = job["params"]
    return jobs.run_job(config, "train", job["project_id"], partial(training.train_model, config, job["project_id"]),
                        cancel=cancel, job_id=job["id"], parent_id=p.get("parent_id"), epochs=p.get("epochs", 10),
                        lr=p.get("lr"), budget=p.get("budget"))
