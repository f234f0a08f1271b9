"""Live mode: every saved stroke brings a draft model up to date and predicts what the user sees.

The draft is one checkpoint per project (``Workspace.live_draft_path``), warm-started from the
previous draft, else the active version, else a new model from the project's pre-trained
weights. An update fine-tunes it briefly on all labels, part of every batch on the newest
stroke (``ml.live``), then predicts the viewed area into ``Workspace.live_view_path``, which
the overlay route shows instead of the whole-volume prediction on that slice.

The label stores' logs are the clock (``labels.newest_event_id``): a draft remembers the newest
event it learned, an update with nothing new only predicts, and an update stops as soon as a newer event is stored
(a newer stroke supersedes it; the steps it made are kept in the draft). The draft becomes a
model version only when the user keeps it.
"""
from __future__ import annotations

import io
import time
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from app.errors import UserError
from app.services import factory, labels, projects, training
from app.services.evaluation import ground_truth_iou
from app.workspace import Workspace
from ml.files import CHECKPOINT_FORMAT, atomic_write, read_sidecar, sidecar_path
from ml.progress import CancelFn, Cancelled, ProgressFn, check_cancel, report

NEWER_POLL_S = 0.2           # how often a running update looks for a newer stroke
LIVE_UNCHECKED = "a live draft learns from every label, none was held out to check it (train a model for an estimate)"


class Outcome(str, Enum):
    UPDATED = "updated"          # the draft learned the newest labels (or had nothing new) and the view was predicted
    SUPERSEDED = "superseded"    # a newer stroke arrived: the next update goes on from this draft


def settings(config: Any):
    """``ml.live.LiveConfig`` from ``APP_LIVE`` (``config.extra["live"]``); a bad key is a UserError."""
    from ml.live import LiveConfig

    try:
        return LiveConfig.from_dict(config.extra.get("live"))
    except (TypeError, ValueError) as exc:
        raise UserError(f"APP_LIVE: {exc}") from None


# --- the label clock ---------------------------------------------------------------------------------
class _Newer:
    """True once an event newer than ``seen`` is logged (polled every NEWER_POLL_S)."""

    def __init__(self, config: Any, project_id: int, seen: int):
        self.config, self.project_id, self.seen = config, project_id, seen
        self.found, self._last = False, 0.0

    def __call__(self) -> bool:
        if not self.found and time.monotonic() - self._last >= NEWER_POLL_S:
            self._last = time.monotonic()
            self.found = labels.newest_event_id(self.config, self.project_id) > self.seen
        return self.found


# --- the draft ------------------------------------------------------------------------------------------
def draft_path(config: Any, project_id: int) -> Path:
    return Workspace(config.workspace).live_draft_path(project_id)


def draft_info(config: Any, project_id: int | None) -> dict | None:
    """The draft's meta (``event_id``, ``updates``, ``steps``, ``base_id``, ``started_from``), or None."""
    if project_id is None:
        return None
    path = draft_path(config, project_id)
    info = read_sidecar(path, CHECKPOINT_FORMAT) if path.is_file() else None
    return dict(info.get("meta") or {}) if info else None


def _start_draft(config: Any, project_id: int, n_classes: int) -> tuple[Any, dict]:
    """``(model, meta)``: the draft, else the active version, else a new (pre-trained) model."""
    from ml.checkpoint import CheckpointError, load_checkpoint

    path = draft_path(config, project_id)
    if path.is_file():
        try:
            model, info = load_checkpoint(path)
            if int(model.config["n_classes"]) == n_classes:
                return model, dict(info["meta"])
        except CheckpointError:
            pass                    # unreadable draft: start again from the active version
    mid = training.active_model_id(config, project_id)
    if mid is not None:
        model, info = training.load_model(config, mid)
        if int(model.config["n_classes"]) == n_classes:     # it has learned the labels up to its event_id
            seen = int((info.get("meta") or {}).get("event_id", 0))
            return model, {"base_id": mid, "started_from": f"v{mid}", "event_id": seen, "updates": 0, "steps": 0}
    from app.services import pretraining

    model = factory.new_model(config, n_classes)
    origin = pretraining.init_new_model(config, project_id, model)
    return model, {"base_id": None, "started_from": origin, "event_id": 0, "updates": 0, "steps": 0}


def _save_draft(config: Any, project_id: int, model: Any, classes: list, meta: dict) -> None:
    from ml.checkpoint import save_checkpoint

    save_checkpoint(draft_path(config, project_id), model, classes, meta=meta)


def _untrained(meta: dict) -> bool:
    """A new (or only pre-trained) model that no label has trained yet."""
    return meta.get("base_id") is None and not meta.get("updates")


def _needs_learning(meta: dict, event_id: int) -> bool:
    """Labels changed since the draft learned them, or a new model has learned nothing yet."""
    return int(meta.get("event_id", 0)) != event_id or _untrained(meta)


def _learn(config: Any, info: dict, model: Any, event_id: int, stroke: dict | None, cfg: Any,
           cancel: CancelFn, device: Any) -> tuple[int, bool]:
    """Fine-tune on every label with budget ``cfg``, the newest ``stroke`` in focus;
    ``(steps made, superseded)``. UserError when the labels cannot train a model."""
    from ml.live import fine_tune, focus_regions
    from ml.slice_context import with_neighbours

    project_id, volume_id = info["project_id"], info["id"]
    regions, _ = training.gather_regions(config, project_id, model)
    focus = []
    if stroke is not None:
        volume = with_neighbours(projects.open_volume(config, volume_id), model)
        focus = focus_regions(volume, projects.label_store(config, volume_id),
                              stroke["z"], stroke["bbox"], info["lo"], info["hi"], cfg.focus_pad)
    newer = _Newer(config, project_id, event_id)
    try:
        result = fine_tune(model, regions, focus, cfg, seed=event_id, device=device,
                           cancel=lambda: newer() or bool(cancel and cancel()))
    except Cancelled as exc:
        if not newer.found:
            raise
        partial = getattr(exc, "result", None)
        return (len(partial.history) if partial is not None else 0), True
    return len(result.history), False


# --- one live update --------------------------------------------------------------------------------------
def update(config: Any, volume_id: int, z: int, view: list | None = None, progress: ProgressFn = None,
           cancel: CancelFn = None) -> dict:
    """Bring the draft up to date with the labels, then predict slice ``z`` around ``view``
    (``[x0, x1, y0, y1]`` in figure coordinates; None = the whole slice). Returns ``{outcome, ...}``."""
    from ml.live import predict_view, view_box

    t0 = time.monotonic()
    info = projects.volume_info(config, volume_id)
    pid, shape = info["project_id"], tuple(info["shape"])
    if not 0 <= int(z) < shape[0]:
        raise UserError(f"Slice {z} is outside 0..{shape[0] - 1}.")
    classes = projects.get_classes(config, volume_id)
    cfg = settings(config)
    event_id = labels.newest_event_id(config, pid)
    stroke = labels.newest_stroke(config, volume_id)        # read with the clock: what this update learns
    report(progress, 0, 3, phase="loading the draft")
    model, meta = _start_draft(config, pid, len(classes))
    device = factory.device_for(config)
    timings = {"load_s": time.monotonic() - t0}
    if _needs_learning(meta, event_id):
        report(progress, 1, 3, phase="learning the newest labels")
        t = time.monotonic()
        budget = cfg.first() if _untrained(meta) else cfg
        steps, superseded = _learn(config, info, model, event_id, stroke, budget, cancel, device)
        meta = {**meta, "event_id": event_id if not superseded else meta.get("event_id", 0),
                "updates": int(meta.get("updates", 0)) + (not superseded), "steps": int(meta.get("steps", 0)) + steps}
        _save_draft(config, pid, model.eval(), classes, meta)
        timings["fine_tune_s"] = time.monotonic() - t
        if superseded:
            return {"outcome": Outcome.SUPERSEDED.value, "steps": steps, "timings": _rounded(timings)}
    check_cancel(cancel)
    report(progress, 2, 3, phase="predicting the view")
    t = time.monotonic()
    centre = None
    if stroke is not None and stroke["z"] == int(z):
        y0, y1, x0, x1 = stroke["bbox"]
        centre = ((y0 + y1) / 2, (x0 + x1) / 2)
    box = view_box(shape[1:], view, cfg.margin, cfg.max_view, centre)
    pred = predict_view(model, projects.open_volume(config, volume_id), int(z), box, info["lo"], info["hi"], device)
    timings["predict_s"] = time.monotonic() - t
    rev = _write_view(config, volume_id, int(z), box, pred, meta)
    timings["total_s"] = time.monotonic() - t0
    report(progress, 3, 3, phase="done")
    return {"outcome": Outcome.UPDATED.value, "rev": rev, "z": int(z), "box": list(box),
            "updates": meta.get("updates", 0), "steps": meta.get("steps", 0),
            "started_from": meta.get("started_from"), "timings": _rounded(timings)}


def _rounded(timings: dict) -> dict:
    return {k: round(v, 3) for k, v in timings.items()}


def _write_view(config: Any, volume_id: int, z: int, box: tuple, pred: dict, meta: dict) -> int:
    """Store the view prediction atomically; returns its revision (ms clock, unique enough per volume)."""
    rev = int(time.time() * 1000)
    buf = io.BytesIO()
    np.savez(buf, prob=pred["prob"].astype(np.float16), entropy=pred["entropy"].astype(np.float16),
             box=np.asarray(box, np.int64), z=np.int64(z), rev=np.int64(rev), event_id=np.int64(meta["event_id"]))
    atomic_write(Workspace(config.workspace).live_view_path(volume_id), lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
    return rev


def view_prediction(config: Any, volume_id: int, z: int) -> dict | None:
    """``{prob, entropy, box, rev}`` of the live view of slice ``z``, or None (none, other slice, unreadable)."""
    path = Workspace(config.workspace).live_view_path(volume_id)
    try:
        with np.load(path) as f:
            if int(f["z"]) != int(z):
                return None
            return {"prob": f["prob"].astype(np.float32), "entropy": f["entropy"].astype(np.float32),
                    "box": tuple(int(v) for v in f["box"]), "rev": int(f["rev"])}
    except (OSError, ValueError, KeyError):
        return None


# --- keep / discard ----------------------------------------------------------------------------------------
def keep(config: Any, project_id: int, progress: ProgressFn = None, cancel: CancelFn = None) -> dict:
    """The draft becomes an active model version with the labels it learned; returns ``{model_id, metrics}``."""
    from ml.checkpoint import load_checkpoint
    from ml.quality import Basis, QualityEstimate
    from ml.train import TrainResult

    path = draft_path(config, project_id)
    if not path.is_file():
        raise UserError("There is no live draft to keep: switch Live on and paint first.")
    report(progress, 0, 2, phase="scoring the draft")
    model, info = load_checkpoint(path)
    meta = dict(info["meta"])
    _, label_stats = training.gather_regions(config, project_id)
    vols = projects.list_volumes(config, project_id)
    classes = projects.get_classes(config, vols[0]["id"])
    metrics = {"val_iou": None, "steps": int(meta.get("steps", 0)), "live_updates": int(meta.get("updates", 0)),
               "started_from": f"live draft from {meta.get('started_from') or factory.SCRATCH}",
               "quality": QualityEstimate(None, Basis(), reason=LIVE_UNCHECKED).to_dict()}
    gt = ground_truth_iou(config, project_id, model, factory.device_for(config))
    metrics.update(gt or {})
    check_cancel(cancel)
    mid = training.store_version(config, project_id, meta.get("base_id"), TrainResult(model, [], None, None),
                                 classes, label_stats, {**meta, "live": True}, metrics, activate=True)
    _forget_draft(config, project_id)          # its view stays: the kept version predicted it
    report(progress, 2, 2, phase="kept")
    return {"model_id": mid, "metrics": metrics}


def _forget_draft(config: Any, project_id: int) -> bool:
    path = draft_path(config, project_id)
    found = path.exists()
    for p in (path, sidecar_path(path)):
        p.unlink(missing_ok=True)
    return found


def discard(config: Any, project_id: int) -> bool:
    """Forget the draft and its views (the active version is shown again); False when there was none."""
    ws = Workspace(config.workspace)
    found = _forget_draft(config, project_id)
    for v in projects.list_volumes(config, project_id):
        path = ws.live_view_path(v["id"])
        found = found or path.exists()
        path.unlink(missing_ok=True)
    return found
