"""Files the app writes for the user: Zarr copies of volumes (atomic), decoded uploads."""
from __future__ import annotations

import base64
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from app.errors import UserError


def decode_upload(contents: str, filename: str, max_bytes: int) -> bytes:
    """Decode a dcc.Upload data URL, refusing files over the size limit before decoding."""
    if not contents or "," not in contents:
        raise UserError(f"{filename or 'The upload'} arrived empty or incomplete; try again.")
    b64 = contents.split(",", 1)[1]
    approx = len(b64) * 3 // 4
    if approx > max_bytes:
        raise UserError(f"{filename} is {approx / 2**20:.0f} MB; uploads are limited to {max_bytes / 2**20:.0f} MB. "
                        "For large volumes put the file in a data folder and add it by path.")
    try:
        return base64.b64decode(b64, validate=False)
    except (ValueError, TypeError) as e:
        raise UserError(f"{filename} could not be decoded ({e}).") from e


def safe_name(filename: str) -> str:
    name = Path(filename or "upload").name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "upload"


def write_zarr(path: Path, data, chunk_yx: int = 512, attrs: dict | None = None) -> Path:
    """Stream a (Z,Y,X) array-like into a chunked Zarr array slice by slice (atomic: tmp dir + rename)."""
    import zarr

    shape = tuple(int(s) for s in data.shape)
    tmp = path.with_name(path.name + f".tmp-{uuid.uuid4().hex[:8]}")
    arr = zarr.create_array(store=str(tmp), shape=shape, dtype=np.dtype(data.dtype),
                            chunks=(1, min(chunk_yx, shape[1]), min(chunk_yx, shape[2])), overwrite=True)
    for z in range(shape[0]):
        arr[z] = np.asarray(data[z])
    if attrs:
        arr.attrs.update(attrs)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path
