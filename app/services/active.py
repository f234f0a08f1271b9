"""Active-learning rounds: score candidate patches with the active model, store a ranked queue.

A round is an ``ALRound`` row with ``k`` ranked ``Suggestion`` rows and a PNG thumbnail per
suggestion (served by the ``/thumbs/<id>.png`` route; :func:`thumbnail_png` also rebuilds a
missing one). Patches that are already labeled (in the label store, or marked labeled in an
earlier round) or that the user skipped never enter the pool. With no
trained model yet, uncertainty means nothing, so the round falls back to a model-free
strategy (``NO_MODEL_FALLBACK``: random patches, which gave steadier first models than
representative ones) and says so. A model-free strategy asked for by name (k-means, core set,
TypiClust) reads the features of the volume's pre-trained body (or of an untrained network when
pre-training has not run).
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.errors import NotFound, UserError
from app.models import ALRound, Suggestion, SuggestionState
from app.services import exports, factory, pretraining, projects, training
from app.workspace import Workspace
from ml.active.pool import candidate_pool, labeled_fraction_excluder
from ml.active.scores import PatchScores
from ml.active.strategies import (DEFAULT_STRATEGY, MODEL_FREE, NEEDS_LABELED, NEEDS_MC, NO_MODEL_FALLBACK,
                                  NO_MODEL_FALLBACK_WHY, READS_NO_SCORE, STRATEGIES, describe, select)
from ml.io.normalize import to_uint8
from ml.progress import CancelFn, ProgressFn, check_cancel, report

MAX_CANDIDATES = 2000       # bounded scoring time on big volumes (seeded subsample of the grid)
MC_PASSES = 8               # MC-dropout passes for strategies that need BALD
THUMB_PX = 96
MAX_K = 64
MAX_LABELED_REFERENCE = 256     # labeled patches whose features coreset and typiclust steer away from


def strategy_label(name: str) -> str:
    """A strategy as the page names it (the dropdown and the notes say the same words)."""
    return name.replace("_", " ")


def strategy_options() -> list[dict]:
    """Dropdown options: every ``ml.active.strategies`` name with its one-line description."""
    return [{"value": name, "label": strategy_label(name), "description": text, "default": name == DEFAULT_STRATEGY}
            for name, text in describe()]


def _validate(strategy: str, k: int, patch_size: int, shape: tuple[int, int, int]) -> tuple[int, int]:
    if strategy not in STRATEGIES:
        raise UserError(f"Unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}.")
    try:
        k, patch_size = int(k), int(patch_size)
    except (TypeError, ValueError):
        raise UserError("Batch size and patch size must be whole numbers.") from None
    if not 1 <= k <= MAX_K:
        raise UserError(f"Batch size must be between 1 and {MAX_K}, got {k}.")
    if patch_size < 16 or patch_size > min(shape[1], shape[2]):
        raise UserError(f"Patch size must be between 16 and {min(shape[1], shape[2])} px "
                        f"(the slice is {shape[1]}×{shape[2]}), got {patch_size}.")
    return k, patch_size


def _excluder(store: Any, done: set[tuple[int, int, int, int]]):
    """Exclude patches handled in earlier rounds and patches whose labeled fraction is above the pool's threshold."""
    labeled = labeled_fraction_excluder(store) if store is not None else (lambda p: False)
    return lambda p: (p.z, p.y, p.x, p.size) in done or labeled(p)


def _done(session: Session, volume_id: int) -> set[tuple[int, int, int, int]]:
    """(z, y, x, size) of suggestions already labeled or skipped in earlier rounds."""
    rows = session.execute(
        sql_select(Suggestion.z, Suggestion.y, Suggestion.x, Suggestion.size)
        .join(ALRound, ALRound.id == Suggestion.round_id)
        .where(ALRound.volume_id == volume_id, Suggestion.status.in_((SuggestionState.SKIPPED, SuggestionState.LABELED)))
    ).all()
    return {tuple(int(v) for v in r) for r in rows}


def _thumbnail(volume: Any, lo: float, hi: float, z: int, y: int, x: int, size: int) -> bytes:
    """Grey PNG of the patch, downscaled to at most THUMB_PX."""
    from PIL import Image

    crop = np.asarray(volume[z, y:y + size, x:x + size], dtype=np.float32)
    img = to_uint8(crop, lo, hi)
    pil = Image.fromarray(img)
    if size > THUMB_PX:
        pil = pil.resize((THUMB_PX, THUMB_PX), Image.BILINEAR)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def suggest_patches(
    config: Any,
    volume_id: int,
    strategy: str = "entropy",
    k: int = 8,
    patch_size: int = 128,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    seed: int = 0,
) -> dict:
    """Run one AL round on a volume; returns ``{round_id, strategy, requested, note, n_candidates}``.

    Nothing is written until scoring finished, so a cancelled round leaves no trace.
    """
    from ml.active.scoring import score_patches, volume_reader

    info = projects.volume_info(config, volume_id)
    project_id, lo, hi, shape = info["project_id"], float(info["lo"]), float(info["hi"]), tuple(info["shape"])
    k, patch_size = _validate(strategy, k, patch_size, shape)
    with session_scope(config) as s:
        done = _done(s, volume_id)
    volume = projects.open_volume(config, volume_id)
    store = projects.label_store(config, volume_id)
    model, model_id, used, note = _model_and_strategy(config, project_id, volume_id, strategy)
    report(progress, 0, 1, phase="building candidate pool")
    pool = candidate_pool(shape, size=patch_size, exclude=_excluder(store, done),
                          max_candidates=MAX_CANDIDATES, seed=seed)
    if not pool:
        raise UserError("No unlabeled patch of that size is left in this volume; try a smaller patch size.")
    check_cancel(cancel)
    device = factory.device_for(config)
    reader = volume_reader(volume, lo, hi)

    scores = _pool_scores(used, model, reader, pool, device, progress, cancel)
    labeled_emb = None
    if used in NEEDS_LABELED:
        labeled = exports.labeled_patches(config, volume_id, grid=patch_size)[:MAX_LABELED_REFERENCE]
        if labeled:
            labeled_emb = score_patches(model, reader, labeled, mc_passes=0, device=device).embeddings
    check_cancel(cancel)
    picks, values = select(used, scores, k, seed=seed, labeled_embeddings=labeled_emb)
    round_id = _store_round(config, (project_id, volume_id, model_id), used, k, patch_size,
                            [pool[i] for i in picks], values,
                            thumb=lambda p: _thumbnail(volume, lo, hi, p.z, p.y, p.x, p.size))
    report(progress, 1, 1, phase="done")
    return {"round_id": round_id, "strategy": used, "requested": strategy, "note": note,
            "n_candidates": len(pool)}


def _pool_scores(used: str, model: Any, reader: Any, pool: list, device: Any, progress: ProgressFn,
                 cancel: CancelFn) -> PatchScores:
    """The candidates' scores as ``used`` reads them; chance reads none, so a random round (the first
    suggestions') comes without a pass over the candidates."""
    from ml.active.scoring import score_patches

    if used in READS_NO_SCORE:
        return PatchScores.unscored(pool)

    def on_batch(n_done: int, total: int, info: dict) -> None:
        report(progress, n_done, total, phase="scoring patches", **info)

    return score_patches(model, reader, pool, mc_passes=MC_PASSES if used in NEEDS_MC else 0, device=device,
                         progress=on_batch, cancel=cancel)


def _model_and_strategy(config: Any, project_id: int, volume_id: int, strategy: str) -> tuple:
    """``(model, model_id, strategy used, note)``: the active model, or with none yet the model-free strategy
    (``NO_MODEL_FALLBACK`` for one that needs a model) on a new network's features (no network for chance)."""
    loaded = training.load_active_model(config, project_id)
    if loaded is not None:
        return loaded[0], loaded[1], strategy, None
    used = strategy if strategy in MODEL_FREE else NO_MODEL_FALLBACK
    note = None if used == strategy else (
        f"No trained model yet, and “{strategy_label(strategy)}” needs one: these are {strategy_label(used)} patches "
        f"instead ({NO_MODEL_FALLBACK_WHY}). Label them completely, train, then ask again.")
    if used in READS_NO_SCORE:
        return None, None, used, note or "No trained model yet: random patches."
    model = factory.new_model(config, len(projects.get_classes(config, volume_id)))
    origin = pretraining.init_new_model(config, project_id, model)
    features = "an untrained network, as no pre-trained weights exist for this model yet" if origin == factory.SCRATCH \
        else f"the network {origin}"
    return model, None, used, note or f"No trained model yet: patch features come from {features}."


def _store_round(config: Any, rec_info: tuple, strategy: str, k: int, patch_size: int,
                 picks: list, values: list[float], thumb) -> int:
    """One transaction: the round, its ranked suggestions, their thumbnails (written atomically)."""
    project_id, volume_id, model_id = rec_info
    ws = Workspace(config.workspace)
    with session_scope(config) as s:
        rnd = ALRound(project_id=project_id, volume_id=volume_id, model_id=model_id, strategy=strategy,
                      k=k, patch_size=patch_size)
        s.add(rnd)
        s.flush()
        for rank, (p, v) in enumerate(zip(picks, values), start=1):
            sug = Suggestion(round_id=rnd.id, rank=rank, z=p.z, y=p.y, x=p.x, size=p.size,
                             score=float(v), status=SuggestionState.TODO, n_strokes=0)
            s.add(sug)
            s.flush()
            path = ws.thumbs_dir(rnd.id) / f"{sug.id}.png"
            atomic_write_bytes(path, thumb(p))
            sug.thumb_path = str(path)
        return int(rnd.id)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file via a temp file in the same folder + rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def latest_round_id(session: Session, volume_id: int) -> int | None:
    """The newest round of a volume (the queue the panel shows), or None."""
    return session.execute(
        sql_select(ALRound.id).where(ALRound.volume_id == volume_id).order_by(ALRound.id.desc()).limit(1)
    ).scalar_one_or_none()


def round_rows(session: Session, round_id: int) -> list[dict]:
    """The queue of a round, best first, as plain dicts (id, rank, z, y, x, size, score, status, strokes, and the
    round's strategy: a random round's score is the draw's priority, not a measure of the patch)."""
    rows = session.execute(
        sql_select(Suggestion).where(Suggestion.round_id == round_id).order_by(Suggestion.rank)
    ).scalars().all()
    strategy = session.get(ALRound, round_id).strategy if rows else None
    return [dict(id=r.id, rank=r.rank, z=r.z, y=r.y, x=r.x, size=r.size, score=float(r.score), status=r.status,
                 n_strokes=int(r.n_strokes or 0), strategy=strategy) for r in rows]


def latest_queue(config: Any, volume_id: int) -> list[dict]:
    """The newest round's suggestions of a volume (``round_rows``), [] before the first round."""
    projects.volume_info(config, volume_id)          # an unknown (or, shared, unseen) volume is an error
    with session_scope(config) as s:
        rid = latest_round_id(s, volume_id)
        return round_rows(s, rid) if rid is not None else []


def _suggestion(session: Session, suggestion_id: int) -> Suggestion:
    sug = session.get(Suggestion, int(suggestion_id))
    if sug is None:
        raise NotFound(f"Suggestion {suggestion_id} does not exist.")
    return sug


def skip_suggestion(session: Session, suggestion_id: int) -> None:
    """Mark a to-do suggestion skipped (a labeled one stays labeled); it never returns to the pool."""
    sug = _suggestion(session, suggestion_id)
    if sug.status == SuggestionState.TODO:
        sug.status = SuggestionState.SKIPPED


def suggestion_nav(session: Session, suggestion_id: int) -> dict:
    """Where the viewer should go: ``{vid, z, y0, y1, x0, x1, outline, source, t}`` (t: a fresh nonce)."""
    sug = _suggestion(session, suggestion_id)
    rnd = session.get(ALRound, sug.round_id)
    return dict(vid=rnd.volume_id, z=sug.z, y0=sug.y, y1=sug.y + sug.size, x0=sug.x, x1=sug.x + sug.size,
                outline=True, source=f"suggestion:{sug.id}", t=time.time())


def thumbnail_png(suggestion_id: int, config: Any) -> bytes:
    """PNG bytes of a suggestion's thumbnail for the ``/thumbs/<id>.png`` route (rebuilt if the file is gone)."""
    with session_scope(config) as s:
        sug = _suggestion(s, suggestion_id)
        if sug.thumb_path and Path(sug.thumb_path).is_file():
            return Path(sug.thumb_path).read_bytes()
        rnd = s.get(ALRound, sug.round_id)
        box, round_id, volume_id = (sug.z, sug.y, sug.x, sug.size), rnd.id, rnd.volume_id
    info = projects.volume_info(config, volume_id)
    data = _thumbnail(projects.open_volume(config, volume_id), float(info["lo"]), float(info["hi"]), *box)
    path = Workspace(config.workspace).thumbs_dir(round_id) / f"{int(suggestion_id)}.png"
    atomic_write_bytes(path, data)
    with session_scope(config) as s:
        _suggestion(s, suggestion_id).thumb_path = str(path)
    return data
