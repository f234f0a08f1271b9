"""Self-supervised pre-training of each volume (``ml.pretrain``), run by itself in the background.

- Where: ``Workspace.pretrained_path(vid)`` holds a volume's finished body weights (sidecar
  ``.json`` beside it); ``ml.pretrain.partial_path`` of it the resumable snapshot of an
  unfinished run.
- Settings: ``ml.pretrain.PretrainConfig`` defaults with a wall-time budget of
  ``DEFAULT_MAX_SECONDS`` of training (the target: <= 10 minutes for a 20 x 1024 x 1024 volume on
  2 CPU cores; 540 s leaves a minute for start-up and saving; crops are read lazily, so the volume
  size does not add to it), overridden by ``APP_PRETRAIN`` (``config.extra["pretrain"]``). The
  crop shrinks to fit a small volume.
- Start: :func:`start` launches a detached job (``app.background``; kind ``pretrain``, params
  ``{"volume_id"}``) unless one is active for the volume. The Data panel calls it when a volume
  is added (switch "Pre-train on new volumes", default ``APP_PRETRAIN_AUTO``) and from its
  Pre-train/Resume button; ``python -m app`` / ``app.wsgi`` for a newly created demo volume.
  Cancel (the jobs list) leaves the snapshot; starting again resumes from it.
- Use: :func:`init_new_model` starts every new model of a project from the best complete
  pre-trained body of its volumes that fits the architecture (:func:`pretrained_for`) and says
  which in the version's provenance ("started from").

Sharing the one compute lock (``app.compute.compute_lock``): pre-training is the background
chore, the user's jobs come first. The job takes the lock itself (``run_job(compute=False)``)
and, while it trains, checks once a second whether another job has been queued for longer than
``YIELD_AFTER_S`` (that is: waits for the lock). If so it saves its snapshot, releases the lock,
waits until no job is waiting any more, takes the lock again and resumes in the same job row
(phase "paused for job N" meanwhile). A user's Suggest/Train/Segment therefore waits a few
seconds (the poll, one step, the snapshot), never the whole run; a model trained while
pre-training is unfinished starts from whatever complete weights exist (or from scratch), and
its provenance says so. The time budget counts training time only, across pauses; a new job
(Resume after a cancel) gets a fresh one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any, Callable

from app import background, compute, jobs
from app.config import Config
from app.db import session_scope
from app.errors import UserError
from app.models import Job, JobState, utcnow
from app.services import factory, projects
from app.workspace import Workspace
from ml.pretrained import PRETRAIN_RANGES, PretrainConfig, PretrainError, fits, partial_path, read_info
from ml.progress import CancelFn, Cancelled, ProgressFn, check_cancel, report
from ml.settings import check_settings

log = logging.getLogger(__name__)

KIND = "pretrain"
DEFAULT_MAX_SECONDS = 540.0     # the pre-training budget: <= 10 min on 2 CPU cores for 20 x 1024 x 1024
MIN_CROP = 16                   # ml.pretrain's smallest crop
YIELD_AFTER_S = 1.0             # a job queued this long is waiting for the compute lock
POLL_S = 1.0                    # how often a running pre-training looks for waiting jobs
PERMILLE = 1000                 # the job row's progress scale (steps or time budget, whichever is further)
SCRATCH = factory.SCRATCH


class PretrainState(str, Enum):
    NONE = "none"           # never pre-trained (or the files were removed)
    RUNNING = "running"     # a job is queued, running or paused for another job
    PARTIAL = "partial"     # stopped early: a resumable snapshot exists
    DONE = "done"           # complete weights exist
    FAILED = "failed"       # the last job failed and left nothing


@dataclass
class PretrainStatus:
    """A volume's pre-training as the Data panel shows it."""

    volume_id: int
    state: PretrainState
    steps: int | None = None        # steps done (done, partial, running)
    job_id: int | None = None       # the latest pre-training job of the volume
    percent: float | None = None    # running: share of the step count or time budget used
    phase: str = ""                 # running: "pre-training", "waiting for the compute lock", "paused for job N"
    error: str | None = None        # failed: the job's error text
    fits: bool | None = None        # done: the weights fit the architecture new models get

    @property
    def active(self) -> bool:
        return self.state is PretrainState.RUNNING


# --- settings and files ---------------------------------------------------------------------------
def settings(config: Config, shape: tuple[int, ...] | None = None):
    """``PretrainConfig`` from the defaults, the time budget and ``APP_PRETRAIN``; fitted to ``shape``."""
    overrides = dict(config.extra.get("pretrain") or {})
    try:
        check_settings(overrides, PRETRAIN_RANGES)        # as app.config checks APP_PRETRAIN at start-up
        cfg = PretrainConfig(**{"max_seconds": DEFAULT_MAX_SECONDS, **overrides})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"APP_PRETRAIN: {exc}") from None
    if shape is None:
        return cfg
    side = min(int(shape[1]), int(shape[2]))
    if side < MIN_CROP:
        raise UserError(f"The volume is {shape[1]} x {shape[2]} px: too small to pre-train on "
                        f"(needs at least {MIN_CROP} x {MIN_CROP}).")
    crop = min(cfg.crop, side)
    return replace(cfg, crop=crop, block=min(cfg.block, crop)) if crop != cfg.crop else cfg


def weights_path(config: Config, volume_id: int) -> Path:
    return Workspace(config.workspace).pretrained_path(int(volume_id))


# --- status ----------------------------------------------------------------------------------------
def latest_job(config: Config, volume_id: int, project_id: int | None = None) -> dict | None:
    """The newest pre-training job of a volume (stale ones reconciled first)."""
    for job in jobs.list_jobs(config, project_id=project_id, kind=KIND, limit=200):
        if int((job["params"] or {}).get("volume_id", -1)) == int(volume_id):
            return job
    return None


def status(config: Config, volume_id: int) -> PretrainStatus:
    """What pre-training a volume has had: none / running / partial (resumable) / done / failed."""
    vid = int(volume_id)
    info = projects.volume_info(config, vid)
    job = latest_job(config, vid, info["project_id"])
    job_info = (job or {}).get("info") or {}
    job_id = job["id"] if job else None
    if job and job["status"] in jobs.ACTIVE_STATES:
        pct = 100.0 * job["progress"] / job["total"] if job["total"] else 0.0
        return PretrainStatus(vid, PretrainState.RUNNING, steps=job_info.get("step"), job_id=job_id, percent=pct,
                              phase=job_info.get("phase") or job["status"])
    path = weights_path(config, vid)
    if path.is_file():
        try:
            done = read_info(path)
            return PretrainStatus(vid, PretrainState.DONE, steps=int(done.get("steps_done", 0)), job_id=job_id,
                                  fits=fits(done, factory.architecture(config)))
        except (PretrainError, OSError, ValueError) as exc:
            return PretrainStatus(vid, PretrainState.FAILED, job_id=job_id, error=str(exc))
    if partial_path(path).is_file():
        return PretrainStatus(vid, PretrainState.PARTIAL, steps=job_info.get("step"), job_id=job_id)
    if job and job["status"] == JobState.FAILED:
        return PretrainStatus(vid, PretrainState.FAILED, job_id=job_id, error=job["error"])
    try:
        settings(config, tuple(info["shape"]))
    except (UserError, ValueError) as exc:    # bad APP_PRETRAIN or a volume too small: say so at once
        return PretrainStatus(vid, PretrainState.FAILED, job_id=job_id, error=str(exc))
    return PretrainStatus(vid, PretrainState.NONE, job_id=job_id)


# --- starting --------------------------------------------------------------------------------------
def start(config: Config, volume_id: int) -> int:
    """Start (or resume) pre-training a volume as a background job; returns its job id.

    A job already queued or running for the volume is returned instead of a second one. Bad
    ``APP_PRETRAIN`` settings or a volume too small to pre-train on raise here, before any job.
    """
    info = projects.volume_info(config, int(volume_id))
    job = latest_job(config, info["id"], info["project_id"])
    if job and job["status"] in jobs.ACTIVE_STATES:
        return int(job["id"])
    settings(config, tuple(info["shape"]))
    return background.launch(config, KIND, info["project_id"], {"volume_id": info["id"]})


def run_detached(config: Config, job: dict, cancel: CancelFn = None) -> jobs.JobOutcome:
    """``app.background`` runner: the recorded job ``job`` (params ``{"volume_id"}``)."""
    vid = int(job["params"]["volume_id"])
    return jobs.run_job(config, KIND, job["project_id"], partial(pretrain_volume, config, vid, job_id=job["id"]),
                        compute=False, cancel=cancel, job_id=job["id"])


# --- the job -----------------------------------------------------------------------------------------
def waiting_job(config: Config) -> int | None:
    """The oldest other job queued for more than ``YIELD_AFTER_S`` (i.e. waiting for the compute lock)."""
    cutoff = utcnow() - timedelta(seconds=YIELD_AFTER_S)
    with session_scope(config) as s:
        row = (s.query(Job.id).filter(Job.status == JobState.QUEUED, Job.kind != KIND, Job.created <= cutoff)
               .order_by(Job.id).first())
        return int(row[0]) if row else None


class _YieldCheck:
    """``cancel``-style predicate: true once another job waits for the lock (looked up every ``POLL_S``)."""

    def __init__(self, config: Config):
        self.config, self.waiting, self._last = config, None, 0.0

    def __call__(self) -> bool:
        if self.waiting is None and time.monotonic() - self._last >= POLL_S:
            self._last = time.monotonic()
            self.waiting = waiting_job(self.config)
        return self.waiting is not None


class _Clock:
    """Training time spent by this job (across pauses) against the time budget."""

    def __init__(self, budget: float | None):
        self.budget, self.spent, self._since = budget, 0.0, None

    def start(self) -> None:
        self._since = time.monotonic()

    def stop(self) -> None:
        self.spent, self._since = self.now(), None

    def now(self) -> float:
        return self.spent + (time.monotonic() - self._since if self._since is not None else 0.0)

    def left(self) -> float | None:
        return None if self.budget is None else max(0.0, self.budget - self.spent)


class _Progress:
    """ml's ``progress(step, steps, info)`` -> the job row in permille of steps or budget, whichever is further."""

    def __init__(self, config: Config, job_id: int | None, progress: ProgressFn, clock: _Clock):
        self.config, self.job_id, self.progress, self.clock = config, job_id, progress, clock
        self.done, self.info = 0, {"phase": "waiting for the compute lock"}

    def __call__(self, step: int, steps: int, info: dict) -> None:
        frac = step / max(1, steps)
        if self.clock.budget:
            frac = max(frac, self.clock.now() / self.clock.budget)
        self.done = min(PERMILLE, round(PERMILLE * frac))
        self.info = {"phase": "pre-training", "step": int(step), "steps": int(steps), "loss": info.get("loss"),
                     "eta_s": info.get("eta_s")}
        report(self.progress, self.done, PERMILLE, **self.info)

    def phase(self, text: str) -> None:
        """A phase change goes to the row at once (the reporter throttles)."""
        self.info = {**self.info, "phase": text}
        if self.job_id is not None:
            jobs.update_progress(self.config, self.job_id, self.done, PERMILLE, self.info)
        else:
            report(self.progress, self.done, PERMILLE, **self.info)


def pretrain_volume(config: Config, volume_id: int, progress: ProgressFn = None, cancel: CancelFn = None,
                    job_id: int | None = None) -> dict:
    """Pre-train (or resume pre-training) one volume; yields the compute lock to waiting jobs.

    Returns ``{volume_id, path, steps, seconds}``; on cancel the snapshot is kept (resumable)
    and :class:`Cancelled` propagates, so the job reads "cancelled".
    """
    from ml.pretrain import Source, pretrain

    info = projects.volume_info(config, int(volume_id))
    volume = projects.open_volume(config, info["id"])
    pcfg = settings(config, tuple(volume.shape))
    out = weights_path(config, info["id"])
    meta = {"volume_id": info["id"], "volume_name": info["name"], "project_id": info["project_id"]}
    sources = [Source(volume, float(info["lo"]), float(info["hi"]))]
    device = factory.device_for(config)
    clock = _Clock(pcfg.max_seconds)
    shown = _Progress(config, job_id, progress, clock)
    user_cancel: Callable[[], bool] = cancel or (lambda: False)
    while True:
        shown.phase("waiting for the compute lock")
        with compute.compute_lock(config, user_cancel):
            shown.phase("pre-training")
            yielding = _YieldCheck(config)
            # one slice in: a body reads one, and a new model reading neighbours widens its first layer
            model = factory.new_model(config, 2, in_channels=1)    # the weights come from the snapshot, if any
            clock.start()
            try:
                result = pretrain(model, sources, out, replace(pcfg, max_seconds=clock.left()), progress=shown,
                                  cancel=lambda: user_cancel() or yielding(), device=device, resume=True, meta=meta)
                return {"volume_id": info["id"], "path": str(out), "steps": int(result.steps),
                        "seconds": round(clock.now(), 1)}
            except Cancelled:
                if user_cancel() or yielding.waiting is None:
                    shown.phase("cancelled: snapshot kept, resumable")
                    raise
            finally:
                clock.stop()
        _wait_turn(config, yielding.waiting, user_cancel, shown)


def _wait_turn(config: Config, waiting: int | None, cancel: Callable[[], bool], shown: _Progress) -> None:
    """Lock released for job ``waiting``: wait until no job waits any more (then queue for the lock again)."""
    while waiting is not None:
        shown.phase(f"paused for job {waiting}")
        for _ in range(int(max(1.0, 2 * YIELD_AFTER_S) / 0.25)):
            check_cancel(cancel)
            time.sleep(0.25)
        jobs.recover_stale(config)        # a waiting job whose process died must not hold us forever
        waiting = waiting_job(config)


# --- using the weights -----------------------------------------------------------------------------
def pretrained_for(config: Config, project_id: int, arch: dict) -> tuple[Path, dict] | None:
    """``(path, info)`` of the complete pre-trained file of one of the project's volumes that fits
    architecture ``arch`` (``ml.pretrain.ARCH_KEYS``; ``n_classes`` does not matter), the one with
    the most steps; ``info`` is ``ml.pretrain.read_info`` plus ``volume`` {id, name}. None if none fits.
    """
    best = None
    for v in projects.list_volumes(config, project_id):
        path = weights_path(config, v["id"])
        if not path.is_file():
            continue
        try:
            info = read_info(path)
        except (PretrainError, OSError, ValueError):
            continue
        if info.get("complete") and fits(info, arch):
            key = int(info.get("steps_done", 0))
            if best is None or key > best[0]:
                best = (key, path, {**info, "volume": {"id": v["id"], "name": v["name"]}})
    return (best[1], best[2]) if best else None


def provenance(info: dict) -> str:
    """"pretrained on <volume name> (<N> steps)" for ``pretrained_for``'s info."""
    n = int(info.get("steps_done", 0))
    return f"pretrained on {info['volume']['name']} ({n} step{'' if n == 1 else 's'})"


def init_new_model(config: Config, project_id: int, model: Any) -> str:
    """Load the best fitting pre-trained body into a new ``model``; returns its provenance
    (``provenance(...)`` or ``SCRATCH`` when nothing fits or the file cannot be used)."""
    from ml.pretrain import init_from_pretrained

    found = pretrained_for(config, project_id, model.config)
    if found is None:
        return SCRATCH
    path, info = found
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        init_from_pretrained(model, path)
    except (PretrainError, OSError, RuntimeError, KeyError) as exc:
        log.warning("not starting from %s: %s", path, exc)
        model.load_state_dict(before)
        return SCRATCH
    return provenance(info)
