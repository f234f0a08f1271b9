"""ORM tables (SQLAlchemy 2): the rows that point at the workspace's files.

JSON columns hold small structured values (shape, voxel size, metrics); arrays live in
files whose locations come from ``app.workspace.Workspace``. ``sqlite_autoincrement``
keeps ids from being reused, so URLs and cache keys built from ids never go stale.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_KINDS = ("suggest", "train", "segment", "export")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
SUGGESTION_STATES = ("todo", "labeled", "skipped")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def loads(text: str | None, default: Any = None) -> Any:
    return default if not text else json.loads(text)


class Base(DeclarativeBase):
    __table_args__ = {"sqlite_autoincrement": True}


def _fk(target: str, nullable: bool = False) -> Mapped:
    return mapped_column(ForeignKey(target, ondelete="CASCADE"), nullable=nullable, index=True)


class Project(Base):
    __tablename__ = "project"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class VolumeRecord(Base):
    __tablename__ = "volume"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _fk("project.id")
    name: Mapped[str] = mapped_column(String(300))
    source_path: Mapped[Optional[str]] = mapped_column(Text)       # where the user's file was
    stored_path: Mapped[str] = mapped_column(Text)                  # what the app opens (source or workspace copy)
    dataset: Mapped[Optional[str]] = mapped_column(String(300))     # HDF5/Zarr dataset inside stored_path
    shape_json: Mapped[str] = mapped_column(Text)
    dtype: Mapped[str] = mapped_column(String(32))
    voxel_size_json: Mapped[Optional[str]] = mapped_column(Text)
    lo: Mapped[float] = mapped_column(Float, default=0.0)          # default display window (percentiles)
    hi: Mapped[float] = mapped_column(Float, default=255.0)
    gt_path: Mapped[Optional[str]] = mapped_column(Text)            # Zarr uint8 binary mask, 1 = object class (demo GT, for evaluation)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(loads(self.shape_json))  # type: ignore[return-value]

    @property
    def voxel_size(self) -> tuple[float, float, float] | None:
        v = loads(self.voxel_size_json)
        return tuple(v) if v else None  # type: ignore[return-value]


class ModelVersion(Base):
    __tablename__ = "model_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _fk("project.id")
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("model_version.id", ondelete="SET NULL"))
    path: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    n_labeled_pixels: Mapped[int] = mapped_column(Integer, default=0)
    n_labeled_patches: Mapped[int] = mapped_column(Integer, default=0)
    metrics_json: Mapped[Optional[str]] = mapped_column(Text)
    history_json: Mapped[Optional[str]] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class ALRound(Base):
    __tablename__ = "al_round"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _fk("project.id")
    volume_id: Mapped[int] = _fk("volume.id")
    model_id: Mapped[Optional[int]] = mapped_column(ForeignKey("model_version.id", ondelete="SET NULL"))
    strategy: Mapped[str] = mapped_column(String(64))
    k: Mapped[int] = mapped_column(Integer)
    patch_size: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime)


class Suggestion(Base):
    __tablename__ = "suggestion"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_id: Mapped[int] = _fk("al_round.id")
    rank: Mapped[int] = mapped_column(Integer)
    z: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    x: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(16), default="todo")
    thumb_path: Mapped[Optional[str]] = mapped_column(Text)
    first_stroke_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    last_stroke_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    n_strokes: Mapped[int] = mapped_column(Integer, default=0)


class LabelEvent(Base):
    """One stroke or undo on a label store: the effort log (time, pixels, where)."""

    __tablename__ = "label_event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    volume_id: Mapped[int] = _fk("volume.id")
    kind: Mapped[str] = mapped_column(String(16))                 # stroke | fill | erase | undo
    z: Mapped[Optional[int]] = mapped_column(Integer)
    value: Mapped[Optional[int]] = mapped_column(Integer)         # label value painted (0 = erase)
    n_pixels: Mapped[int] = mapped_column(Integer, default=0)     # pixels covered by the stroke
    stroke_id: Mapped[Optional[int]] = mapped_column(Integer)     # LabelStore's undo entry
    suggestion_id: Mapped[Optional[int]] = mapped_column(ForeignKey("suggestion.id", ondelete="SET NULL"))
    bbox_json: Mapped[Optional[str]] = mapped_column(Text)        # [y0, y1, x0, x1]
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Job(Base):
    __tablename__ = "job"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[Optional[int]] = _fk("project.id", nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    info_json: Mapped[Optional[str]] = mapped_column(Text)
    error: Mapped[Optional[str]] = mapped_column(Text)
    result_json: Mapped[Optional[str]] = mapped_column(Text)
    params_json: Mapped[Optional[str]] = mapped_column(Text)
    pid: Mapped[Optional[int]] = mapped_column(Integer)             # process running it (stale detection)
    host: Mapped[Optional[str]] = mapped_column(String(255))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started: Mapped[Optional[datetime]] = mapped_column(DateTime)
    finished: Mapped[Optional[datetime]] = mapped_column(DateTime)


class Segmentation(Base):
    __tablename__ = "segmentation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    volume_id: Mapped[int] = _fk("volume.id")
    model_id: Mapped[Optional[int]] = mapped_column(ForeignKey("model_version.id", ondelete="SET NULL"))
    pred_path: Mapped[Optional[str]] = mapped_column(Text)
    instances_path: Mapped[Optional[str]] = mapped_column(Text)
    table_path: Mapped[Optional[str]] = mapped_column(Text)
    params_json: Mapped[Optional[str]] = mapped_column(Text)
    summary_json: Mapped[Optional[str]] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
