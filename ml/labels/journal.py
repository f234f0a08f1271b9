"""Crash-safe multi-file updates for the label store: a file lock and a small redo journal.

One stroke may rewrite several tiles, its undo record, the meta file and the stroke log.
Each file is replaced atomically, but a crash between files would leave half a stroke.
So a transaction first writes every new file into ``journal/`` and then, as its commit
point, ``journal/manifest.json`` (itself tmp + os.replace). Only then are the files
moved into place. Whoever next takes the lock finds either no manifest (the stroke never
happened: leftovers are discarded) or a manifest (it did: the moves are replayed; a move
whose source is gone was already done). Writers hold an exclusive ``flock`` on
``.lock``; readers a shared one, so nobody sees a stroke half-applied.
"""
from __future__ import annotations

import fcntl
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

JOURNAL = "journal"
MANIFEST = "manifest.json"
LOG = "strokes.jsonl"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"

# Test hook: called with a stage name ("journal" after each journal file, "committed"
# after the manifest, "applied" after each file moved in place). Lets a test kill a
# process at an exact point of a transaction.
_hook: Callable[[str], None] | None = None


def _fire(stage: str) -> None:
    if _hook is not None:
        _hook(stage)


def fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes, durable: bool) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        if durable:
            os.fsync(f.fileno())


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``path`` so readers see the old or the new content, never a torn file."""
    tmp = path.parent / f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        _write_file(tmp, data, durable)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


@contextmanager
def file_lock(root: Path, exclusive: bool) -> Iterator[None]:
    """Hold ``flock`` on ``root/.lock``; a fresh descriptor per call so threads and
    separate store objects in one process exclude each other too."""
    try:
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        fd = os.open(root / LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def needs_recovery(root: Path) -> bool:
    """True when a committed transaction was interrupted (checked without the lock)."""
    return (root / JOURNAL / MANIFEST).exists()


def append_log(root: Path, entries: list[dict], durable: bool) -> None:
    """Append JSON lines to the stroke log, first ending any line a crash left torn."""
    if not entries:
        return
    path = root / LOG
    text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries)
    with open(path, "ab+") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                text = "\n" + text
        f.seek(0, os.SEEK_END)
        f.write(text.encode())
        f.flush()
        if durable:
            os.fsync(f.fileno())


def read_log(root: Path) -> list[dict]:
    """All parseable log lines (a torn last line from a crash is skipped)."""
    path = root / LOG
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class Transaction:
    """Files to put or delete (paths relative to the store root) plus log lines, applied
    all-or-nothing by :meth:`commit`. Later puts of the same path replace earlier ones."""

    def __init__(self) -> None:
        self.files: dict[str, bytes | None] = {}
        self.log: list[dict] = []

    def put(self, rel: str, data: bytes) -> None:
        self.files.pop(rel, None)
        self.files[rel] = data

    def delete(self, rel: str) -> None:
        self.files.pop(rel, None)
        self.files[rel] = None

    def commit(self, root: Path, durable: bool = True) -> None:
        """Journal, commit, apply. Caller holds the exclusive lock."""
        jdir = root / JOURNAL
        _clear_dir(jdir)
        jdir.mkdir(exist_ok=True)
        ops: list[list[str]] = []
        for i, (rel, data) in enumerate(self.files.items()):
            if data is None:
                ops.append(["del", rel])
                continue
            name = f"{JOURNAL}/{i:06d}.bin"
            _write_file(root / name, data, durable)
            ops.append(["put", name, rel])
            _fire("journal")
        if durable:
            fsync_dir(jdir)
        manifest = {"ops": ops, "log": self.log}
        atomic_write(jdir / MANIFEST, json.dumps(manifest).encode(), durable)
        _fire("committed")
        _apply(root, manifest, durable)


def _apply(root: Path, manifest: dict, durable: bool) -> None:
    """Move journaled files into place (idempotent), append the log, close the journal."""
    touched: set[Path] = set()
    for op in manifest["ops"]:
        if op[0] == "put":
            src, dst = root / op[1], root / op[2]
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                touched.add(dst.parent)
        else:
            (root / op[1]).unlink(missing_ok=True)
            touched.add((root / op[1]).parent)
        _fire("applied")
    if durable:
        for d in touched:
            fsync_dir(d)
    append_log(root, manifest.get("log", []), durable)
    (root / JOURNAL / MANIFEST).unlink()
    _clear_dir(root / JOURNAL)


def _clear_dir(path: Path) -> None:
    if path.is_dir():
        for p in path.iterdir():
            p.unlink(missing_ok=True)


def recover(root: Path, durable: bool = True) -> str:
    """Finish or discard an interrupted transaction. Caller holds the exclusive lock.

    Returns "clean", "rolled_forward" or "discarded".
    """
    jdir = root / JOURNAL
    for sub in (root, root / "chunks", root / "history"):
        if sub.is_dir():
            for p in sub.glob(f"{TMP_PREFIX}*"):
                p.unlink(missing_ok=True)
    if not jdir.is_dir():
        return "clean"
    if (jdir / MANIFEST).exists():
        _apply(root, json.loads((jdir / MANIFEST).read_text()), durable)
        return "rolled_forward"
    if any(jdir.iterdir()):
        _clear_dir(jdir)
        return "discarded"
    return "clean"
