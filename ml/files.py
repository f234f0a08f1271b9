"""Files written so that a crash never leaves half of one: atomic writes and JSON sidecars.

Torch-free, so the web server can list models and pre-trained weights without loading torch.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

#: ``format`` of a model checkpoint and its sidecar (``ml.checkpoint``), readable here without torch.
CHECKPOINT_FORMAT = "activeseg-checkpoint"


def sidecar_path(path: str | Path) -> Path:
    """``model.pt`` -> ``model.pt.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write through ``write(tmp_path)`` into a temp file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_sidecar(path: str | Path, fmt: str) -> dict | None:
    """The JSON sidecar of ``path`` when it exists, parses and carries ``format == fmt``; else None."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        info = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == fmt else None
