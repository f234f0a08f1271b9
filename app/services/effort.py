"""Labeling effort: time and strokes per suggested patch and per AL round.

Each stroke the expert paints is attributed to the suggestions whose patch it touches
(:func:`record_stroke_effort`, called by ``app.services.labels`` after every stroke), which
keeps first/last stroke times and a stroke count on the ``Suggestion`` row. Time is then
estimated from the LabelStore's stroke log: each stroke costs the gap since the previous
stroke, capped at ``IDLE_GAP_S`` (a coffee break is not labeling time); a first stroke
after a pause costs ``FIRST_STROKE_S``.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.models import ALRound, Suggestion, SuggestionState, utcnow

IDLE_GAP_S = 60.0
FIRST_STROKE_S = 3.0


def _naive_utc(when: datetime | float | None) -> datetime:
    """The DB stores naive UTC datetimes; accept aware datetimes, epoch seconds or None (now)."""
    if when is None:
        return utcnow()
    if isinstance(when, (int, float)):
        return datetime.fromtimestamp(float(when), timezone.utc).replace(tzinfo=None)
    if when.tzinfo is not None:
        return when.astimezone(timezone.utc).replace(tzinfo=None)
    return when


def _overlaps(sug: Suggestion, y0: int, y1: int, x0: int, x1: int) -> bool:
    return sug.y < y1 and y0 < sug.y + sug.size and sug.x < x1 and x0 < sug.x + sug.size


def record_stroke_effort(session: Session, volume_id: int, z: int, bbox: Sequence[int],
                         when: datetime | float | None = None) -> list[int]:
    """Attribute one stroke (slice ``z``, ``bbox`` = (y0, y1, x0, x1)) to the suggestions it touches.

    Updates first/last stroke time and the stroke count, marks the suggestion labeled and
    keeps the round's started/finished times; skipped suggestions are left alone. Returns the
    ids of the suggestions updated, in id order.
    """
    y0, y1, x0, x1 = (int(v) for v in bbox)
    when = _naive_utc(when)
    rows = session.execute(
        sql_select(Suggestion).join(ALRound, ALRound.id == Suggestion.round_id)
        .where(ALRound.volume_id == volume_id, Suggestion.z == int(z), Suggestion.status != SuggestionState.SKIPPED)
        .order_by(Suggestion.id)
    ).scalars().all()
    hit = [s for s in rows if _overlaps(s, y0, y1, x0, x1)]
    for sug in hit:
        sug.first_stroke_at = sug.first_stroke_at or when
        sug.last_stroke_at = when
        sug.n_strokes = int(sug.n_strokes or 0) + 1
        sug.status = SuggestionState.LABELED
    session.flush()
    for round_id in {s.round_id for s in hit}:
        _update_round_times(session, round_id, when)
    return [s.id for s in hit]


def _update_round_times(session: Session, round_id: int, when: datetime) -> None:
    rnd = session.get(ALRound, round_id)
    rnd.started_at = rnd.started_at or when
    todo = session.query(Suggestion).filter(Suggestion.round_id == round_id, Suggestion.status == SuggestionState.TODO).count()
    rnd.finished_at = when if todo == 0 else None


# --- time from the stroke log ----------------------------------------------------------------------
def stroke_costs(strokes: Sequence[dict]) -> list[float]:
    """Seconds each stroke cost: the gap since the previous one, capped (see module doc)."""
    costs, prev = [], None
    for s in sorted(strokes, key=lambda e: e["time"]):
        gap = None if prev is None else s["time"] - prev
        costs.append(FIRST_STROKE_S if gap is None or gap > IDLE_GAP_S else max(gap, 0.0))
        prev = s["time"]
    return costs


def _stroke_time_by_patch(strokes: Sequence[dict], sugs: Sequence[Suggestion]) -> dict[int, float]:
    """Seconds of strokes touching each suggestion's patch (a stroke may count for several)."""
    out = {s.id: 0.0 for s in sugs}
    ordered = sorted(strokes, key=lambda e: e["time"])
    by_z: dict[int, list[Suggestion]] = {}
    for s in sugs:
        by_z.setdefault(int(s.z), []).append(s)
    for stroke, cost in zip(ordered, stroke_costs(ordered)):
        y0, y1, x0, x1 = stroke["bbox"]
        for sug in by_z.get(int(stroke["z"]), ()):
            if _overlaps(sug, y0, y1, x0, x1):
                out[sug.id] += cost
    return out


def _strokes(config: Any, volume_id: int) -> list[dict]:
    from app.services import projects

    try:
        return [s for s in projects.label_store(config, volume_id).stroke_log() if s.get("time") is not None]
    except Exception:  # no store (volume gone): effort falls back to first/last stroke times
        return []


def _span(sug: Suggestion) -> float:
    if sug.first_stroke_at and sug.last_stroke_at:
        return (sug.last_stroke_at - sug.first_stroke_at).total_seconds()
    return 0.0


def patch_effort(config: Any, project_id: int | None) -> list[dict]:
    """One row per suggestion of the project: round, rank, where, status, strokes, seconds."""
    if project_id is None:
        return []
    with session_scope(config) as s:
        rows = s.execute(
            sql_select(Suggestion, ALRound).join(ALRound, ALRound.id == Suggestion.round_id)
            .where(ALRound.project_id == project_id).order_by(ALRound.id, Suggestion.rank)
        ).all()
        by_volume: dict[int, list[Suggestion]] = {}
        for sug, rnd in rows:
            by_volume.setdefault(rnd.volume_id, []).append(sug)
        seconds: dict[int, float] = {}
        for vid, sugs in by_volume.items():
            strokes = _strokes(config, vid)
            seconds.update(_stroke_time_by_patch(strokes, sugs) if strokes else {x.id: _span(x) for x in sugs})
        return [dict(suggestion_id=sug.id, round_id=rnd.id, volume_id=rnd.volume_id, strategy=rnd.strategy,
                     rank=sug.rank, z=sug.z, y=sug.y, x=sug.x, size=sug.size, status=sug.status,
                     n_strokes=int(sug.n_strokes or 0), seconds=round(seconds.get(sug.id, 0.0), 1),
                     first_stroke_at=_iso(sug.first_stroke_at), last_stroke_at=_iso(sug.last_stroke_at))
                for sug, rnd in rows]


def _iso(d: datetime | None) -> str | None:
    return d.isoformat(timespec="seconds") if d else None


def round_effort(config: Any, project_id: int | None, patches: list[dict] | None = None) -> list[dict]:
    """Per AL round: patches, labeled, skipped, strokes, seconds and seconds per labeled patch."""
    patches = patch_effort(config, project_id) if patches is None else patches
    rounds: dict[int, dict] = {}
    for p in patches:
        r = rounds.setdefault(p["round_id"], dict(round_id=p["round_id"], strategy=p["strategy"], n_patches=0,
                                                  n_labeled=0, n_skipped=0, n_strokes=0, seconds=0.0))
        r["n_patches"] += 1
        r["n_labeled"] += p["status"] == SuggestionState.LABELED
        r["n_skipped"] += p["status"] == SuggestionState.SKIPPED
        r["n_strokes"] += p["n_strokes"]
        r["seconds"] += p["seconds"]
    for r in rounds.values():
        r["seconds"] = round(r["seconds"], 1)
        r["seconds_per_patch"] = round(r["seconds"] / r["n_labeled"], 1) if r["n_labeled"] else None
    return [rounds[k] for k in sorted(rounds)]


def volume_effort(config: Any, volume_id: int) -> dict:
    """All strokes of a volume (inside suggested patches or not): count, undone, active seconds, pixels."""
    strokes = _strokes(config, volume_id)
    return {"n_strokes": len(strokes), "n_undone": sum(bool(s.get("undone")) for s in strokes),
            "seconds": round(sum(stroke_costs(strokes)), 1),
            "n_pixels": int(sum(int(s.get("n_pixels", 0)) for s in strokes))}


PATCH_CSV_COLUMNS = ["suggestion_id", "round_id", "volume_id", "strategy", "rank", "z", "y", "x", "size", "status",
                     "n_strokes", "seconds", "first_stroke_at", "last_stroke_at"]


def effort_csv(config: Any, project_id: int | None) -> str:
    """Per-patch effort as CSV text (one row per suggestion)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PATCH_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in patch_effort(config, project_id):
        writer.writerow({k: row[k] for k in PATCH_CSV_COLUMNS})
    return buf.getvalue()
