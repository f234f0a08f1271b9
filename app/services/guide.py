"""Where a project stands on the path Data -> Paint -> Train -> Review & suggest -> Segment -> Export.

Each step is "done" by what exists, not by which buttons were pressed, so the guide is right
after a reload, for a project made by a script, and when an expert skips around.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select

from app import jobs
from app.db import session_scope
from app.models import ALRound, JobState
from app.services import labels, segmentation, training

STEPS = ("data", "paint", "train", "review", "segment", "export")


def _painted_every_class(config: Any, volume_id: int) -> bool:
    """Labels of every class: a model needs both what the structure is and what it is not."""
    return all(row["pixels"] > 0 for row in labels.counts(config, volume_id))


def _suggested(config: Any, volume_id: int) -> bool:
    with session_scope(config) as s:
        return bool(s.scalar(select(exists().where(ALRound.volume_id == volume_id))))


def _exported(config: Any, project_id: int) -> bool:
    return any(j["status"] == JobState.DONE for j in jobs.list_jobs(config, project_id, kind="export", limit=5))


def steps_done(config: Any, project_id: int | None, volume_id: int | None) -> dict[str, bool]:
    """``{step: done}`` for STEPS, in order."""
    done = dict.fromkeys(STEPS, False)
    if project_id is None or volume_id is None:
        return done
    done["data"] = True
    done["paint"] = _painted_every_class(config, volume_id)
    done["train"] = training.active_model_id(config, project_id) is not None
    done["review"] = _suggested(config, volume_id)
    done["segment"] = segmentation.latest_segmentation_id(config, volume_id) is not None
    done["export"] = _exported(config, project_id)
    return done
