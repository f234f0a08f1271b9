"""ORM tables (SQLAlchemy 2): the rows that point at the workspace's files.

JSON columns hold small structured values (shape, voxel size, metrics); arrays live in
files whose locations come from ``app.workspace.Workspace``. ``sqlite_autoincrement``
keeps ids from being reused, so URLs and cache keys built from ids never go stale.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Optional

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_KINDS = ("suggest", "train", "segment", "export", "pretrain", "live")
class JobState(str, Enum):
    """A job row's status (compares equal to the stored text)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class SuggestionState(str, Enum):
    """A suggested patch's status (compares equal to the stored text)."""

    TODO = "todo"
    LABELED = "labeled"
    SKIPPED = "skipped"


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


def _model_fk() -> Mapped:
    """A model version a row was made with; the row outlives the version (SET NULL)."""
    return mapped_column(ForeignKey("model_version.id", ondelete="SET NULL"))


def _text() -> Mapped:
    return mapped_column(Text)


def _int(default: int | None = None) -> Mapped:
    return mapped_column(Integer, default=default)


def _when() -> Mapped:
    return mapped_column(DateTime)


class _Id:
    """Integer primary key (never reused: ``sqlite_autoincrement``)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class _Created(_Id):
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class User(_Created, Base):
    """A login of the lab-shared mode (APP_AUTH=1); passwords and API tokens are stored hashed only."""

    __tablename__ = "user"
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = _text()
    token_hash: Mapped[Optional[str]] = mapped_column(String(64), index=True)   # sha256 of the API token


class LoginSession(_Created, Base):
    """One browser's sign-in of the shared mode, named by its cookie (stored hashed, like API tokens).

    Signing out deletes the row, so no cookie from before opens anything again: not a copy, and not
    the one a callback in flight at the sign-out sends back (Flask re-sends a signed-in cookie on
    every response). A new password deletes all of the user's rows; removing the user cascades.
    """

    __tablename__ = "login_session"
    user_id: Mapped[int] = _fk("user.id")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)


class Project(_Created, Base):
    """A project; ``owner_id`` None: made in single-user mode (every user of the shared mode sees it)."""

    __tablename__ = "project"
    name: Mapped[str] = mapped_column(String(200), unique=True)
    owner_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id"), index=True)


class ProjectShare(_Id, Base):
    """A project its owner shared with another user, to read or to edit too."""

    __tablename__ = "project_share"
    project_id: Mapped[int] = _fk("project.id")
    user_id: Mapped[int] = _fk("user.id")
    can_edit: Mapped[bool] = mapped_column(Boolean, default=False)


class VolumeRecord(_Created, Base):
    __tablename__ = "volume"
    project_id: Mapped[int] = _fk("project.id")
    name: Mapped[str] = mapped_column(String(300))
    source_path: Mapped[Optional[str]] = _text()                    # where the user's file was
    stored_path: Mapped[str] = _text()                              # what the app opens (source or workspace copy)
    dataset: Mapped[Optional[str]] = mapped_column(String(300))     # HDF5/Zarr dataset inside stored_path
    shape_json: Mapped[str] = _text()
    dtype: Mapped[str] = mapped_column(String(32))
    voxel_size_json: Mapped[Optional[str]] = _text()
    lo: Mapped[float] = mapped_column(Float, default=0.0)          # default display window (percentiles)
    hi: Mapped[float] = mapped_column(Float, default=255.0)
    gt_path: Mapped[Optional[str]] = _text()    # Zarr uint8 binary mask, 1 = object class (demo GT, for evaluation)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(loads(self.shape_json))  # type: ignore[return-value]

    @property
    def voxel_size(self) -> tuple[float, float, float] | None:
        v = loads(self.voxel_size_json)
        return tuple(v) if v else None  # type: ignore[return-value]


class ModelVersion(_Created, Base):
    __tablename__ = "model_version"
    project_id: Mapped[int] = _fk("project.id")
    parent_id: Mapped[Optional[int]] = _model_fk()
    path: Mapped[str] = _text()
    n_labeled_pixels: Mapped[int] = _int(0)
    n_labeled_patches: Mapped[int] = _int(0)
    metrics_json: Mapped[Optional[str]] = _text()
    history_json: Mapped[Optional[str]] = _text()
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class ALRound(_Created, Base):
    __tablename__ = "al_round"
    project_id: Mapped[int] = _fk("project.id")
    volume_id: Mapped[int] = _fk("volume.id")
    model_id: Mapped[Optional[int]] = _model_fk()
    strategy: Mapped[str] = mapped_column(String(64))
    k: Mapped[int] = _int()
    patch_size: Mapped[int] = _int()
    started_at: Mapped[Optional[datetime]] = _when()
    finished_at: Mapped[Optional[datetime]] = _when()


class Suggestion(_Id, Base):
    __tablename__ = "suggestion"
    round_id: Mapped[int] = _fk("al_round.id")
    rank: Mapped[int] = _int()
    z: Mapped[int] = _int()
    y: Mapped[int] = _int()
    x: Mapped[int] = _int()
    size: Mapped[int] = _int()
    score: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(16), default=SuggestionState.TODO.value)
    thumb_path: Mapped[Optional[str]] = _text()
    first_stroke_at: Mapped[Optional[datetime]] = _when()
    last_stroke_at: Mapped[Optional[datetime]] = _when()
    n_strokes: Mapped[int] = _int(0)


class Job(_Created, Base):
    __tablename__ = "job"
    kind: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[Optional[int]] = _fk("project.id", nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    progress: Mapped[int] = _int(0)
    total: Mapped[int] = _int(0)
    info_json: Mapped[Optional[str]] = _text()
    error: Mapped[Optional[str]] = _text()
    result_json: Mapped[Optional[str]] = _text()
    params_json: Mapped[Optional[str]] = _text()
    pid: Mapped[Optional[int]] = _int()                             # process running it (stale detection)
    host: Mapped[Optional[str]] = mapped_column(String(255))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    started: Mapped[Optional[datetime]] = _when()
    finished: Mapped[Optional[datetime]] = _when()
    beat: Mapped[Optional[datetime]] = _when()          # last sign of life of its process (app.jobs.Heartbeat)


class Segmentation(_Created, Base):
    __tablename__ = "segmentation"
    volume_id: Mapped[int] = _fk("volume.id")
    model_id: Mapped[Optional[int]] = _model_fk()
    pred_path: Mapped[Optional[str]] = _text()
    instances_path: Mapped[Optional[str]] = _text()
    table_path: Mapped[Optional[str]] = _text()
    params_json: Mapped[Optional[str]] = _text()
    summary_json: Mapped[Optional[str]] = _text()
