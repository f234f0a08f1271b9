"""Sparse, crash-safe, multi-process label store: one directory per volume.

Layout::

    meta.json        shape, classes, per-value counts, tile index (bbox per tile), undo stack
    chunks/Z.CY.CX.z  zlib (256, 256) uint8 tiles; a missing tile is all unlabeled
    history/ID.npz    undo record of one stroke (its mask crop and the old values under it)
    strokes.jsonl     append-only stroke log (effort metrics), one JSON object per line
    journal/          in-flight transaction (see ml.labels.journal)
    .lock             flock target: writers exclusive, readers shared

Nothing is cached in memory except the (immutable) shape, so two processes sharing a
directory always read each other's latest committed strokes.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ml.labels import journal as jr
from ml.labels.chunks import CHUNK, LabelStoreError, parse_key
from ml.labels.tiles import read_box, write_box
from ml.labels.dense import import_slices
from ml.labels.history import decode_undo, encode_undo, history_relpath, merge_log, undo_where
from ml.labels.validate import check_box, check_classes, check_range, check_shape, check_z, clip_mask
from ml.progress import CancelFn, ProgressFn

DEFAULT_CLASSES: list[dict] = [
    {"name": "background", "color": "#1f77b4"},
    {"name": "mitochondria", "color": "#ff7f0e"},
]
MAX_UNDO = 50
FORMAT = "activeseg-labels"
META = "meta.json"


class LabelStore:
    """Labels of one volume: 0 = unlabeled, 1..C = class index + 1.

    Open with :meth:`create`, :meth:`open` or :meth:`open_or_create`. Every public
    method is safe to call from several threads and processes at once. ``durable=False``
    skips fsync (still atomic against process crashes, not against power loss).
    """

    def __init__(self, path: str | Path, durable: bool = True):
        self.path = Path(path)
        self.durable = durable
        if not (self.path / META).is_file():
            raise FileNotFoundError(f"no label store at {self.path} (missing {META}); use LabelStore.create")
        with self._writing():
            meta = self._meta()
        self.shape: tuple[int, int, int] = tuple(meta["shape"])  # type: ignore[assignment]

    # -- opening -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        shape: Sequence[int],
        classes: Sequence[dict | str] = DEFAULT_CLASSES,
        max_undo: int = MAX_UNDO,
        durable: bool = True,
    ) -> "LabelStore":
        """Make an empty store; raises FileExistsError when one is already there."""
        shape = check_shape(shape)
        classes = check_classes(classes)
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        with jr.file_lock(root, True):
            if (root / META).exists():
                raise FileExistsError(f"a label store already exists at {root}")
            (root / "chunks").mkdir(exist_ok=True)
            (root / "history").mkdir(exist_ok=True)
            meta = {
                "format": FORMAT,
                "version": 1,
                "shape": list(shape),
                "chunk": [1, CHUNK, CHUNK],
                "classes": classes,
                "counts": {str(v): 0 for v in range(1, len(classes) + 1)},
                "next_id": 1,
                "undo": [],
                "max_undo": int(max_undo),
                "tiles": {},
            }
            jr.atomic_write(root / META, json.dumps(meta).encode(), durable)
        return cls(root, durable)

    @classmethod
    def open(cls, path: str | Path, durable: bool = True) -> "LabelStore":
        """Open an existing store, finishing or discarding a crashed transaction."""
        return cls(path, durable)

    @classmethod
    def open_or_create(
        cls, path: str | Path, shape: Sequence[int], classes: Sequence[dict | str] = DEFAULT_CLASSES
    ) -> "LabelStore":
        """Open the store at ``path`` (its shape must match) or create it."""
        try:
            store = cls.create(path, shape, classes)
        except FileExistsError:
            store = cls.open(path)
        if store.shape != check_shape(shape):
            raise ValueError(f"label store at {path} has shape {store.shape}, volume has {tuple(shape)}")
        return store

    # -- locking and meta ------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[None]:
        with jr.file_lock(self.path, True):
            jr.recover(self.path, self.durable)
            yield

    @contextmanager
    def _reading(self) -> Iterator[None]:
        if jr.needs_recovery(self.path):
            with self._writing():
                pass
        with jr.file_lock(self.path, False):
            yield

    def _meta(self) -> dict:
        try:
            meta = json.loads((self.path / META).read_text())
        except (OSError, ValueError) as exc:
            raise LabelStoreError(f"cannot read {self.path / META}: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise LabelStoreError(f"{self.path / META} is not an ActiveSeg label store (format {meta.get('format')!r})")
        return meta

    def _commit(self, txn: jr.Transaction, meta: dict) -> None:
        if txn.log:      # the revision counts log events; stores written before it counted start from their log
            before = meta["events"] if "events" in meta else len(jr.read_log(self.path))
            meta["events"] = int(before) + len(txn.log)
        txn.put(META, json.dumps(meta).encode())
        txn.commit(self.path, self.durable)

    def _drop_undo(self, txn: jr.Transaction, meta: dict) -> None:
        for sid in meta["undo"] + [sid for sid, _ in meta.get("redo", [])]:
            txn.delete(history_relpath(sid))
        meta["undo"], meta["redo"] = [], []

    def _drop_redo(self, txn: jr.Transaction, meta: dict, z: int) -> None:
        """A new stroke on slice ``z`` ends the redo of strokes undone there (they could overwrite it)."""
        keep = []
        for sid, rz in meta.get("redo", []):
            if int(rz) == int(z):
                txn.delete(history_relpath(sid))
            else:
                keep.append([sid, rz])
        meta["redo"] = keep

    # -- writing ---------------------------------------------------------------------
    def paint(self, z: int, mask: Any, value: int, y0: int = 0, x0: int = 0, kind: str | None = None) -> int:
        """Set ``value`` (0 = erase) where the bool ``mask`` placed at (y0, x0) is True.

        ``mask`` may also be a ``(mask, y0, x0)`` tuple (as from rasterize_path_bbox).
        Parts outside the image are clipped. One undo entry and one log line per call;
        ``kind`` (e.g. stroke / fill / erase) is kept in the log line.
        """
        if isinstance(mask, tuple):
            mask, y0, x0 = mask
        z = check_z(z, self.shape)
        mask, y0, x0 = clip_mask(mask, y0, x0, self.shape)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"value must be an int label (0 = erase, 1..C), got {value!r}")
        value = int(value)
        with self._writing():
            meta = self._meta()
            if not 0 <= value <= len(meta["classes"]):
                raise ValueError(f"value must be 0 (erase) or 1..{len(meta['classes'])}, got {value}")
            txn = jr.Transaction()
            self._drop_redo(txn, meta, z)
            new = np.broadcast_to(np.uint8(value), mask.shape)
            old = write_box(self.path, txn, meta, z, y0, x0, new, mask)
            sid = int(meta["next_id"])
            meta["next_id"] = sid + 1
            txn.put(history_relpath(sid), encode_undo(z, y0, x0, value, mask, old[mask]))
            meta["undo"].append(sid)
            while len(meta["undo"]) > meta["max_undo"]:
                txn.delete(history_relpath(meta["undo"].pop(0)))
            h, w = mask.shape
            txn.log.append({
                "event": "paint", "id": sid, "z": z, "value": value, "n_pixels": int(mask.sum()),
                "changed": int((old[mask] != value).sum()), "time": time.time(), "bbox": [y0, y0 + h, x0, x0 + w],
                **({"kind": str(kind)} if kind else {}),
            })
            self._commit(txn, meta)
        return sid

    def _newest_undoable(self, meta: dict, z: int | None) -> int | None:
        """Position in the undo history of the newest stroke (on slice ``z`` when given)."""
        for i in range(len(meta["undo"]) - 1, -1, -1):
            record = self.path / history_relpath(meta["undo"][i])
            if not record.is_file():
                raise LabelStoreError(f"undo record {record} of stroke {meta['undo'][i]} is missing")
            if z is None or undo_where(record.read_bytes())[0] == int(z):
                return i
        return None

    def undo(self, z: int | None = None) -> dict | None:
        """Revert the most recent stroke still in the undo history (the newest on slice ``z`` when
        given: strokes are 2D, so no later stroke on another slice touches its pixels).

        Returns ``{id, z, value, pixels}`` of what was undone, or None when there is nothing.
        """
        with self._writing():
            meta = self._meta()
            pick = self._newest_undoable(meta, z)
            if pick is None:
                return None
            sid = meta["undo"].pop(pick)
            data = (self.path / history_relpath(sid)).read_bytes()
            z, y0, x0, mask, old_vals = decode_undo(data)
            _, value, pixels = undo_where(data)
            restore = np.zeros(mask.shape, np.uint8)
            restore[mask] = old_vals
            txn = jr.Transaction()
            write_box(self.path, txn, meta, z, y0, x0, restore, mask)
            meta.setdefault("redo", []).append([sid, int(z)])      # its record stays: redo re-applies it
            while len(meta["redo"]) > meta["max_undo"]:
                txn.delete(history_relpath(meta["redo"].pop(0)[0]))
            txn.log.append({"event": "undo", "id": sid, "time": time.time()})
            self._commit(txn, meta)
        return {"id": int(sid), "z": int(z), "value": value, "pixels": pixels}

    def redo(self, z: int | None = None) -> dict | None:
        """Paint again the most recently undone stroke (the newest undone on slice ``z`` when given),
        unless a stroke painted on its slice since then ended its redo. ``{id, z, value, pixels}`` or None."""
        with self._writing():
            meta = self._meta()
            redo = meta.get("redo", [])
            pick = next((i for i in range(len(redo) - 1, -1, -1) if z is None or int(redo[i][1]) == int(z)), None)
            if pick is None:
                return None
            sid, _ = redo.pop(pick)
            data = (self.path / history_relpath(sid)).read_bytes()
            z, y0, x0, mask, _old = decode_undo(data)
            _, value, pixels = undo_where(data)
            txn = jr.Transaction()
            write_box(self.path, txn, meta, z, y0, x0, np.broadcast_to(np.uint8(value), mask.shape), mask)
            meta["undo"].append(sid)                              # the same record undoes it again
            txn.log.append({"event": "redo", "id": sid, "time": time.time()})
            self._commit(txn, meta)
        return {"id": int(sid), "z": int(z), "value": value, "pixels": pixels}

    def set_classes(self, classes: Sequence[dict | str]) -> None:
        """Rename/recolour/add classes. Classes are positional (label v = classes[v-1]),
        so removing means shortening the list, allowed only for classes with no pixels;
        it also clears the undo history (an undo could resurrect removed labels)."""
        classes = check_classes(classes)
        with self._writing():
            meta = self._meta()
            dropped = {v: n for v, n in meta["counts"].items() if int(v) > len(classes) and n > 0}
            if dropped:
                names = [meta["classes"][int(v) - 1]["name"] for v in dropped]
                raise ValueError(f"cannot remove classes {names}: they still have labeled pixels {dropped}")
            txn = jr.Transaction()
            if len(classes) < len(meta["classes"]):
                self._drop_undo(txn, meta)
            meta["classes"] = classes
            meta["counts"] = {str(v): meta["counts"].get(str(v), 0) for v in range(1, len(classes) + 1)}
            self._commit(txn, meta)

    def import_dense(
        self,
        array_like: Any,
        mapping: dict | None = None,
        merge: bool = False,
        progress: ProgressFn = None,
        cancel: CancelFn = None,
    ) -> dict[int, int]:
        """Load a dense label volume slice by slice (one transaction per slice).

        ``mapping`` {source value: label value}; unmapped values become unlabeled.
        Default: 0 -> 1 (background), nonzero -> 2. ``merge=False`` replaces everything;
        ``merge=True`` writes only pixels whose mapped label is nonzero. Clears the undo
        history. On cancel the slices done so far stay imported.
        """
        import_slices(self, array_like, mapping, merge, progress, cancel)
        return self.counts()

    def _import_slice(self, z: int, labels: np.ndarray, where: np.ndarray, n_classes: int) -> None:
        """Write one mapped slice (called by ml.labels.dense under no lock)."""
        with self._writing():
            meta = self._meta()
            if len(meta["classes"]) != n_classes:
                raise RuntimeError("classes changed during import")
            txn = jr.Transaction()
            self._drop_undo(txn, meta)
            write_box(self.path, txn, meta, z, 0, 0, labels, where)
            self._commit(txn, meta)

    # -- reading ---------------------------------------------------------------------
    @property
    def classes(self) -> list[dict]:
        with self._reading():
            return self._meta()["classes"]

    def counts(self) -> dict[int, int]:
        """Labeled pixels per label value (every class value present, zeros included)."""
        with self._reading():
            return {int(v): int(n) for v, n in self._meta()["counts"].items()}

    def read(self, z: int, y0: int = 0, y1: int | None = None, x0: int = 0, x1: int | None = None) -> np.ndarray:
        """uint8 labels of rows [y0, y1) and columns [x0, x1) of slice z (clipped to the image)."""
        z = check_z(z, self.shape)
        y0, y1 = check_box(y0, y1, self.shape[1], "y")
        x0, x1 = check_box(x0, x1, self.shape[2], "x")
        with self._reading():
            return read_box(self.path, z, y0, y1, x0, x1)

    def read_slice(self, z: int) -> np.ndarray:
        return self.read(z)

    def read_block(self, zs: slice | int, ys: slice | int, xs: slice | int) -> np.ndarray:
        """(Z, Y, X) block for step-1 slices (ints keep their axis, as length 1)."""
        (z0, z1), (y0, y1), (x0, x1) = (check_range(s, n, a) for s, n, a in zip((zs, ys, xs), self.shape, "zyx"))
        with self._reading():
            out = np.zeros((z1 - z0, y1 - y0, x1 - x0), np.uint8)
            for z in range(z0, z1):
                out[z - z0] = read_box(self.path, z, y0, y1, x0, x1)
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        """numpy-style indexing, so the store can back a Volume or an exporter."""
        key = key if isinstance(key, tuple) else (key,)
        if Ellipsis in key:
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (4 - len(key)) + key[i + 1:]
        if len(key) > 3:
            raise IndexError(f"too many indices for a 3D label store: {key!r}")
        key = key + (slice(None),) * (3 - len(key))
        block = self.read_block(*key)
        return block[tuple(0 if isinstance(k, (int, np.integer)) else slice(None) for k in key)]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 3

    def __len__(self) -> int:
        return self.shape[0]

    def labeled_boxes(self) -> list[tuple[int, int, int, int, int]]:
        """(z, y0, y1, x0, x1) of the labeled pixels of each non-empty tile, sorted."""
        with self._reading():
            tiles = self._meta()["tiles"]
        boxes = []
        for key, (ty0, ty1, tx0, tx1) in tiles.items():
            z, cy, cx = parse_key(key)
            boxes.append((z, cy * CHUNK + ty0, cy * CHUNK + ty1, cx * CHUNK + tx0, cx * CHUNK + tx1))
        return sorted(boxes)

    def to_array(self, max_bytes: int = 1 << 30) -> np.ndarray:
        """The whole label volume in memory (refuses beyond ``max_bytes``)."""
        n = int(np.prod(self.shape))
        if n > max_bytes:
            raise MemoryError(f"label volume {self.shape} is {n} bytes, above max_bytes={max_bytes}; use read_block")
        return self.read_block(slice(None), slice(None), slice(None))

    def events(self) -> list[dict]:
        """The log as written, oldest first: ``{"event": "paint", id, z, value, n_pixels, changed, time,
        bbox[, kind]}`` and ``{"event": "undo", id, time}`` (the one record of what was painted when)."""
        with self._reading():
            return jr.read_log(self.path)

    def revision(self) -> int:
        """How many strokes and undos this store has logged: grows with every one, never goes back."""
        with self._reading():
            meta = self._meta()
            return int(meta["events"]) if "events" in meta else len(jr.read_log(self.path))

    def stroke_log(self) -> list[dict]:
        """Every stroke ever painted, in order: id, z, value, n_pixels, changed, time,
        bbox (y0, y1, x0, x1), undone (bool). Imports are not strokes."""
        with self._reading():
            lines = jr.read_log(self.path)
        return merge_log(lines)

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r}, shape={self.shape})"

