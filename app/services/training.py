"""Model versions: train or fine-tune on the project's labels, list them, pick the active one.

A training job gathers every labeled region of the project's volumes, trains (a new U-Net,
started from the project's pre-trained weights when some fit (``app.services.pretraining``),
pulled toward them when it self-trains (``ml.anchor.start_anchor``), or a warm start from a version;
``metrics.started_from`` records which), evaluates against ground truth on a fixed slab when a
volume has it, and stores a ``ModelVersion`` row + checkpoint.
Live curves: the progress info carries a compact loss / validation-IoU history, which
``app.jobs.run_job`` mirrors into the Job row, so the panel (and a reloaded page) can draw it.
Cancel keeps the work: the best weights so far become a new, *inactive* version marked
"cancelled" (activate it by hand if it is good enough).
Validation and ground-truth IoU: ``app.services.evaluation``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from functools import partial
from typing import Any, Callable

from sqlalchemy import select as sql_select

from app.db import session_scope
from app.errors import NotFound, UserError
from app.models import ModelVersion, VolumeRecord, dumps, loads
from app.services import budget as budget_mod
from app.services import factory, labels, projects, self_training
from app.services.evaluation import (ground_truth_iou, quality, quality_text, split_for_validation,
                                     without_val_iou)
from app.workspace import Workspace
from ml.active.pool import labeled_grid_patches
from ml.progress import CancelFn, Cancelled, ProgressFn, report
from ml.quality import dense_share

GRID = 128                   # n_labeled_patches counts 128x128 grid tiles holding labels
MIN_STEPS_PER_EPOCH = 20
MAX_HISTORY_POINTS = 400     # live-curve points kept in the Job row
CURVE_EVERY_S = 0.4          # how often the live curve is re-thinned (the Job row is written every 0.5 s)
def active_model_row(session, project_id: int) -> ModelVersion | None:
    return session.execute(
        sql_select(ModelVersion).where(ModelVersion.project_id == project_id, ModelVersion.active.is_(True))
        .order_by(ModelVersion.id.desc()).limit(1)
    ).scalar_one_or_none()


def active_model_id(config: Any, project_id: int) -> int | None:
    with session_scope(config) as s:
        row = active_model_row(s, project_id)
        return row.id if row else None


def load_model(config: Any, model_id: int):
    """``(model, info)`` of a stored version, on CPU (callers move it)."""
    from ml.checkpoint import load_checkpoint

    with session_scope(config) as s:
        row = s.get(ModelVersion, int(model_id))
        if row is None:
            raise NotFound(f"Model version {model_id} does not exist.")
        path = row.path
    return load_checkpoint(path)


def load_active_model(config: Any, project_id: int) -> tuple[Any, int] | None:
    """``(model, model_id)`` of the project's active version, or None when none is trained yet."""
    mid = active_model_id(config, project_id)
    if mid is None:
        return None
    model, _ = load_model(config, mid)
    return model, mid


# --- what the labels are ----------------------------------------------------------------------
def labeled_patch_count(store: Any, grid: int = GRID) -> int:
    """Labeled patches of a store, as ``ml.active.pool.labeled_grid_patches`` draws them (the model table's count)."""
    return len(labeled_grid_patches(store, grid))


def _project_volumes(config: Any, project_id: int) -> list[dict]:
    vols = projects.list_volumes(config, project_id)
    if not vols:
        raise UserError("This project has no volume yet: add one in the Data panel.")
    return vols


def gather_regions(config: Any, project_id: int, model: Any = None) -> tuple[list, dict]:
    """Training regions from every volume's labels, read as ``model`` reads a slice (with its neighbours
    for a 2.5D model; None: alone), and label statistics for the version row."""
    from ml.dataset import regions_from_store
    from ml.slice_context import with_neighbours

    regions, n_pixels, n_patches, values = [], 0, 0, set()
    for v in _project_volumes(config, project_id):
        store = projects.label_store(config, v["id"])
        counts = store.counts()
        if not any(n for val, n in counts.items() if val > 0):
            continue
        values |= {val for val, n in counts.items() if val > 0 and n > 0}
        n_pixels += sum(n for val, n in counts.items() if val > 0)
        n_patches += labeled_patch_count(store)
        volume = projects.open_volume(config, v["id"])
        volume = volume if model is None else with_neighbours(volume, model)
        regions += regions_from_store(volume, store, v["lo"], v["hi"])
    if not regions:
        raise UserError("Nothing is labeled yet: paint some background and some mitochondria first.")
    if len(values) < 2:
        raise UserError("Only one class is labeled: paint at least two classes (e.g. background and "
                        "mitochondria) so the model can tell them apart.")
    return regions, {"n_labeled_pixels": int(n_pixels), "n_labeled_patches": int(n_patches)}


# --- the training job -----------------------------------------------------------------------------
def compact_history(history: list[dict], max_points: int = MAX_HISTORY_POINTS) -> list[dict]:
    """At most ``max_points`` entries: every validation point plus evenly thinned loss points."""
    if len(history) <= max_points:
        return history
    stride = math.ceil(len(history) / max_points)
    return [h for i, h in enumerate(history) if i % stride == 0 or h.get("val_iou") is not None
            or i == len(history) - 1]


def steps_for(regions: list, epochs: int, batch_size: int, crop: int) -> int:
    """Epoch = enough crops to cover the labeled regions' area once (at least MIN_STEPS_PER_EPOCH)."""
    area = sum(int(r.image.size) for r in regions)
    per_epoch = max(MIN_STEPS_PER_EPOCH, math.ceil(area / (batch_size * crop * crop)))
    return int(epochs) * per_epoch


def _validate_params(epochs: Any, lr: Any) -> tuple[int, float | None]:
    """Epochs and learning rate as numbers; no learning rate (None, blank) means the default (APP_TRAIN's, else
    ``ml.train.TrainConfig.lr``)."""
    try:
        epochs, lr = int(epochs), (None if lr in (None, "") else float(lr))
    except (TypeError, ValueError):
        raise UserError("Epochs must be a whole number and the learning rate a number.") from None
    if not 1 <= epochs <= 1000:
        raise UserError(f"Epochs must be between 1 and 1000, got {epochs}.")
    if lr is not None and not 0 < lr <= 1:
        raise UserError(f"The learning rate must be in (0, 1], e.g. 0.003, or blank for the default; got {lr}.")
    return epochs, lr


def _start_model(config: Any, project_id: int, parent_id: int | None, classes: list) -> tuple[Any, str]:
    """``(model, started_from)``: a new model starts from the project's pre-trained body when one fits
    ("pretrained on <volume> (<N> steps)", else "scratch"); a continued one from its parent ("v<id>")."""
    if parent_id is None:
        from app.services import pretraining

        model = factory.new_model(config, len(classes))
        return model, pretraining.init_new_model(config, project_id, model)
    with session_scope(config) as s:
        row = s.get(ModelVersion, int(parent_id))
        if row is None or row.project_id != project_id:
            raise UserError(f"Model version {parent_id} is not part of this project.")
    model, info = load_model(config, int(parent_id))
    if int(model.config["n_classes"]) != len(classes):
        raise UserError(f"Version {parent_id} knows {model.config['n_classes']} classes but the project now has "
                        f"{len(classes)}: train a new model instead.")
    return model, f"v{parent_id}"


def _budget_plan(seconds: float, per_step: float, time_share: float,
                 self_steps: Callable[[int], int]) -> tuple[int, float | None]:
    """Steps within a time budget, and the seconds left to pseudo-labeling: its share of the budget when the
    run will self-train (``self_steps(n) > 0``), none when it will not (too short, or strokes)."""
    pseudo_s = seconds * time_share
    n_steps = budget_mod.steps_within(seconds - pseudo_s, per_step)
    if self_steps(n_steps):
        return n_steps, pseudo_s
    return budget_mod.steps_within(seconds, per_step), None


def train_model(config: Any, project_id: int, parent_id: int | None = None, epochs: int = 10, lr: float | None = None,
                progress: ProgressFn = None, cancel: CancelFn = None, steps: int | None = None,
                train_overrides: dict | None = None, budget: str | None = None) -> dict:
    """Train a version (new, or warm-started from ``parent_id``); returns ``{model_id, metrics}``.

    ``steps`` overrides the epoch-derived step count; ``budget`` (``app.services.budget``: "quick",
    "refine") sets it from a time budget measured on this machine instead; ``train_overrides`` sets other
    ``ml.train.TrainConfig`` fields (tests use tiny crops). On cancel the partial model is
    stored inactive, then Cancelled propagates so the job reads "cancelled".
    """
    from ml.anchor import start_anchor
    from ml.self_training import train_in_phases
    from ml.train import TrainConfig, config_dict

    epochs, lr = _validate_params(epochs, lr)
    seconds = budget_mod.budget_seconds(budget)
    report(progress, 0, 1, phase="reading labels")
    seen = labels.newest_event_id(config, project_id)
    vols = _project_volumes(config, project_id)
    classes = projects.get_classes(config, vols[0]["id"])
    model, started_from = _start_model(config, project_id, parent_id, classes)
    regions, label_stats = gather_regions(config, project_id, model)
    overrides = dict(config.extra.get("train", {}), **(train_overrides or {}), **({} if lr is None else {"lr": lr}))
    probe = TrainConfig(**overrides)
    device = factory.device_for(config)
    self_cfg = self_training.settings(config)
    self_steps_of = partial(self_cfg.self_steps, warm=parent_id is not None,
                            dense_share=dense_share(r.labels for r in regions))
    pseudo_seconds = None
    if steps:
        n_steps = int(steps)
    elif seconds is not None:
        report(progress, 0, 1, phase="measuring this machine's speed")
        per_step = budget_mod.seconds_per_step(model, regions, probe, device)
        n_steps, pseudo_seconds = _budget_plan(seconds, per_step, self_cfg.time_share, self_steps_of)
        overrides["max_seconds"] = (seconds - (pseudo_seconds or 0.0)) * budget_mod.HARD_LIMIT
    else:
        n_steps = steps_for(regions, epochs, probe.batch_size, probe.crop)
    self_steps = self_steps_of(n_steps)
    pulled = start_anchor(parent_id is None and started_from != factory.SCRATCH, self_steps > 0)
    tcfg = TrainConfig(**{"anchor": pulled, **overrides, "steps": n_steps})     # APP_TRAIN's anchor wins
    train_regions, val_regions, val_fg = split_for_validation(regions, tcfg)
    history: list[dict] = []
    started = time.monotonic()
    shown = {"at": 0.0, "curve": []}

    def on_step(done: int, total: int, info: dict) -> None:
        phase = info.get("phase", "training")
        if info.get("loss") is None:                               # a phase starts (pseudo-labeling)
            report(progress, done, total, phase=phase, history=shown["curve"])
            return
        evaluated = done % tcfg.eval_every == 0 or done == total   # when ml.train validates
        val = info.get("val_iou") if val_fg else None
        history.append({"step": done, "loss": info.get("loss"), "val_iou": val if evaluated else None})
        if time.monotonic() - shown["at"] >= CURVE_EVERY_S or done == total:   # thinning costs O(steps)
            shown.update(at=time.monotonic(), curve=compact_history(history))
        report(progress, done, total, phase=phase, loss=info.get("loss"), val_iou=val,
               eta_s=info.get("eta_s"), history=shown["curve"])

    pseudo_stats: dict = {}
    per_round = None if pseudo_seconds is None else pseudo_seconds / self_cfg.rounds    # each round labels the pool

    def pseudo(m: Any) -> list:
        out = self_training.pseudo_regions_for(config, project_id, m, val_regions, train_regions, device, tcfg.seed,
                                               cancel, per_round)
        pseudo_stats.update(self_training.summary(out, self_steps))
        return out

    meta = {"parent_id": parent_id, "started_from": started_from, "epochs": epochs, "budget": budget,
            "event_id": seen,                # the label log it learned up to (live mode goes on from there)
            "train_config": config_dict(tcfg, device), "self_train": asdict(self_cfg), **label_stats}
    try:
        result = train_in_phases(model, train_regions, val_regions, tcfg, self_cfg, self_steps, pseudo,
                                 progress=on_step, cancel=cancel, device=device)
    except Cancelled as exc:
        kept = getattr(exc, "result", None)
        if kept is not None and kept.history:
            store_version(config, project_id, parent_id, _measured(kept, val_fg), classes, label_stats, meta,
                           {"val_iou": kept.best_val_iou if val_fg else None, "val_foreground": val_fg,
                            "best_step": kept.best_step, "cancelled": True, "steps": len(kept.history),
                            "started_from": started_from, "self_training": pseudo_stats or None},
                           activate=False)
        raise
    report(progress, n_steps, n_steps, phase="evaluating", history=compact_history(history))
    metrics = {"val_iou": result.best_val_iou if val_fg else None, "val_foreground": val_fg,
               "best_step": result.best_step, "steps": len(result.history),
               "seconds": round(time.monotonic() - started, 1),
               "device": str(device), "n_regions": len(regions), "started_from": started_from,
               "self_training": pseudo_stats or None}
    metrics["quality"] = quality(config, project_id, result.labels_only, val_regions, device)   # bench.quality v5
    metrics["quality_before_self_training"] = result.supervised is not None
    gt = ground_truth_iou(config, project_id, result.model, device)
    if gt:
        metrics.update(gt)
    mid = store_version(config, project_id, parent_id, _measured(result, val_fg), classes, label_stats, meta,
                         metrics, activate=True)
    return {"model_id": mid, "metrics": metrics}


def _measured(result: Any, val_fg: bool) -> Any:
    """``result`` with its history's validation IoU dropped when validation had no foreground."""
    if not val_fg:
        result.history = without_val_iou(result.history)
    return result


def store_version(config: Any, project_id: int, parent_id: int | None, result: Any, classes: list,
                   label_stats: dict, meta: dict, metrics: dict, activate: bool) -> int:
    """Row + checkpoint in one transaction (checkpoint written atomically before commit)."""
    from ml.checkpoint import save_checkpoint

    ws = Workspace(config.workspace)
    with session_scope(config) as s:
        row = ModelVersion(project_id=project_id, parent_id=parent_id, path="", active=False,
                           n_labeled_pixels=label_stats["n_labeled_pixels"],
                           n_labeled_patches=label_stats["n_labeled_patches"],
                           metrics_json=dumps(metrics), history_json=dumps(compact_history(result.history, 1000)))
        s.add(row)
        s.flush()
        path = ws.model_path(row.id)
        save_checkpoint(path, result.model, classes, history=result.history,
                        meta={**meta, "model_id": row.id, "project_id": project_id, "metrics": metrics})
        row.path = str(path)
        if activate:
            _set_active(s, project_id, row.id)
        return int(row.id)


def _set_active(session, project_id: int, model_id: int) -> None:
    for r in session.execute(sql_select(ModelVersion).where(ModelVersion.project_id == project_id)).scalars():
        r.active = r.id == model_id


def activate_model(config: Any, project_id: int, model_id: int) -> None:
    """Make ``model_id`` the project's active version (used for suggestions and segmentation)."""
    with session_scope(config) as s:
        row = s.get(ModelVersion, int(model_id))
        if row is None or row.project_id != project_id:
            raise NotFound(f"Model version {model_id} is not part of this project.")
        _set_active(s, project_id, int(model_id))


# --- listing -----------------------------------------------------------------------------------------
def _version_dict(r: ModelVersion) -> dict:
    m = loads(r.metrics_json, {})
    return {"id": r.id, "parent_id": r.parent_id, "created": r.created.isoformat(timespec="seconds"),
            "active": bool(r.active), "active_mark": "●" if r.active else "",
            "n_labeled_pixels": r.n_labeled_pixels, "n_labeled_patches": r.n_labeled_patches,
            "val_iou": _round(m.get("val_iou")), "gt_iou": _round(m.get("gt_iou")), "steps": m.get("steps"),
            "seconds": m.get("seconds"),
            "est_iou": _round((m.get("quality") or {}).get("iou")),
            "est_iou_high": _round((m.get("quality") or {}).get("high")), "quality_text": quality_text(m),
            "cancelled": bool(m.get("cancelled")),
            "note": "; ".join(t for t in ("cancelled (partial)" if m.get("cancelled") else "",
                                          self_training.note(m.get("self_training"))) if t),
            "started_from": started_from(r, m), "path": r.path}


def started_from(row: ModelVersion, metrics: dict) -> str:
    """A version's provenance; versions from before pre-training existed started from scratch or their parent."""
    return metrics.get("started_from") or (f"v{row.parent_id}" if row.parent_id else factory.SCRATCH)


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 4)


def list_versions(config: Any, project_id: int | None) -> list[dict]:
    """Every version of the project, newest first."""
    if project_id is None:
        return []
    with session_scope(config) as s:
        rows = s.execute(sql_select(ModelVersion).where(ModelVersion.project_id == project_id)
                         .order_by(ModelVersion.id.desc())).scalars().all()
        return [_version_dict(r) for r in rows]


def version_history(config: Any, model_id: int) -> list[dict]:
    with session_scope(config) as s:
        row = s.get(ModelVersion, int(model_id))
        return loads(row.history_json, []) if row else []


def efficiency_points(config: Any, project_id: int | None) -> list[dict]:
    """Completed versions in labeling order: labeled patches/pixels vs validation and GT IoU."""
    pts = [v for v in list_versions(config, project_id) if not v["cancelled"]]
    return sorted(pts, key=lambda v: (v["n_labeled_patches"], v["n_labeled_pixels"], v["id"]))


def has_ground_truth(config: Any, project_id: int | None) -> bool:
    if project_id is None:
        return False
    with session_scope(config) as s:
        return s.query(VolumeRecord).filter(VolumeRecord.project_id == project_id,
                                            VolumeRecord.gt_path.isnot(None)).count() > 0
