"""Exporters for the tools people open EM results in: Fiji (TIFF), napari (OME-Zarr), 3D Slicer (NRRD).

Volumes are streamed a slab of z slices at a time from anything sliceable by z (numpy,
zarr, :class:`ml.volume.Volume`, a label store), so a big export never sits in memory.
Every writer builds a temporary file or folder beside the target and renames it when
complete: a crash or cancel never leaves a half-written export under the final name.
"""
from __future__ import annotations

import csv
import os
import shutil
import uuid
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import tifffile

from ml.progress import CancelFn, ProgressFn, check_cancel, report

SLAB_BYTES = 64 << 20  # slices read per step are bounded by this many bytes
_IMAGEJ_DTYPES = {np.dtype(t) for t in ("uint8", "uint16", "int16", "float32")}
_FLOAT32_EXACT = 2 ** 24  # integers up to this magnitude are exact in float32
_NRRD_TYPES = {"uint8": "uint8", "int8": "int8", "uint16": "uint16", "int16": "int16", "uint32": "uint32",
               "int32": "int32", "uint64": "uint64", "int64": "int64", "float32": "float", "float64": "double"}


# --- shared helpers -------------------------------------------------------------------------------
def _zyx(arr: Any) -> Any:
    """3D sources pass through (lazy); 2D images become depth 1; other shapes raise ValueError."""
    if len(arr.shape) == 2:
        return np.asarray(arr)[None]
    if len(arr.shape) != 3:
        raise ValueError(f"export needs a (Z, Y, X) volume or a (Y, X) image, got shape {tuple(arr.shape)}")
    return arr


def _slabs(arr: Any, step: int | None = None, progress: ProgressFn = None,
           cancel: CancelFn = None) -> Iterator[tuple[int, np.ndarray]]:
    """(z0, block) over the volume, ``step`` slices at a time (default: bounded by SLAB_BYTES)."""
    z, y, x = (int(s) for s in arr.shape)
    step = step or max(1, SLAB_BYTES // max(1, y * x * np.dtype(arr.dtype).itemsize))
    for z0 in range(0, z, step):
        check_cancel(cancel)
        block = np.asarray(arr[z0:min(z, z0 + step)])
        yield z0, block.astype(np.uint8) if block.dtype == np.bool_ else block
        report(progress, min(z, z0 + step), z)


def _voxel(voxel_size: Sequence[float] | None) -> tuple[float, float, float] | None:
    if voxel_size is None or len(voxel_size) == 0:
        return None
    try:
        vs = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        vs = ()
    if len(vs) != 3 or not all(np.isfinite(v) and v > 0 for v in vs):
        raise ValueError(f"voxel_size must be three positive numbers (z, y, x) in nm, got {voxel_size!r}")
    return vs  # type: ignore[return-value]


def _tmp_name(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.{tag}")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path, "tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path, replaceable: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it takes the place of ``path``.

    An existing ``path`` is replaced only when ``replaceable(path)`` says it is an earlier export
    of the same kind (never an unrelated folder or file).
    """
    path = Path(path)
    if path.exists() and not (path.is_dir() and replaceable(path)):
        raise FileExistsError(f"{path} exists and is not an earlier export of this kind; choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        old = _tmp_name(path, "old")
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- TIFF (Fiji / ImageJ) ---------------------------------------------------------------------------
def imagej_dtype(dtype: Any) -> np.dtype:
    """The ImageJ-compatible type a dtype is written as (ImageJ has 8/16-bit, int16 and float32 only)."""
    dtype = np.dtype(dtype)
    if dtype in _IMAGEJ_DTYPES:
        return dtype
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype == np.int8:
        return np.dtype(np.int16)
    return np.dtype(np.float32)  # floats and 32/64-bit integers (checked exact while writing)


def _as_imagej(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if block.dtype.kind in "iu" and dtype.kind == "f" and block.size:
        if max(abs(int(block.min())), abs(int(block.max()))) > _FLOAT32_EXACT:
            raise ValueError(f"{block.dtype} values above {_FLOAT32_EXACT} cannot be written exactly to an ImageJ "
                             "TIFF (float32); export as OME-Zarr or NRRD instead")
    return block.astype(dtype, copy=False)


def _imagej_kwargs(voxel: tuple[float, float, float] | None, axes: str = "ZYX") -> dict:
    """ImageJ calibration in µm: resolution = pixels per µm, spacing = slice distance in µm."""
    meta: dict[str, Any] = {"axes": axes}
    if voxel is None:
        return {"metadata": meta}
    vz, vy, vx = (v / 1000.0 for v in voxel)
    meta.update(spacing=vz, unit="um")
    return {"metadata": meta, "resolution": (1.0 / vx, 1.0 / vy)}


def write_tiff(path: str | Path, arr: Any, voxel_size: Sequence[float] | None = None,
               progress: ProgressFn = None, cancel: CancelFn = None) -> Path:
    """ImageJ hyperstack TIFF that Fiji opens with its µm calibration; streamed slab by slab.

    Types ImageJ lacks are widened: bool -> uint8, int8 -> int16, other types -> float32
    (integers must then fit in +-2**24, else ValueError).
    """
    arr, path = _zyx(arr), Path(path)
    dtype = imagej_dtype(arr.dtype)
    pages = (page for _, block in _slabs(arr, progress=progress, cancel=cancel)
             for page in _as_imagej(block, dtype))
    with atomic_file(path) as tmp:
        tifffile.imwrite(tmp, data=pages, shape=tuple(int(s) for s in arr.shape), dtype=dtype, imagej=True,
                         **_imagej_kwargs(_voxel(voxel_size)))
    return path


# --- OME-Zarr (napari) ------------------------------------------------------------------------------
def _pyramid_levels(y: int, x: int, levels: int | None) -> int:
    """Auto: halve Y/X until the largest side is under 1024 (at most 6 levels)."""
    if levels is not None:
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        return int(levels)
    n = 1
    while max(y, x) >> (n - 1) >= 1024 and n < 6:
        n += 1
    return n


def ome_multiscales(name: str, levels: int, voxel: tuple[float, float, float] | None) -> dict:
    """OME-NGFF 0.4 'multiscales' attributes: level l is a stride-2**l subsampling in y and x."""
    vz, vy, vx = voxel or (1.0, 1.0, 1.0)
    axes = [{"name": a, "type": "space", **({"unit": "nanometer"} if voxel else {})} for a in "zyx"]
    datasets = [{"path": str(lv), "coordinateTransformations": [
        {"type": "scale", "scale": [vz, vy * 2 ** lv, vx * 2 ** lv]}]} for lv in range(levels)]
    return {"multiscales": [{"version": "0.4", "name": name, "axes": axes, "datasets": datasets,
                             "type": "nearest", "metadata": {"method": "numpy stride subsampling in y and x"}}]}


def is_ome_zarr(path: Path) -> bool:
    """A folder written by write_ome_zarr (or another Zarr group), which an export may replace."""
    return (path / ".zgroup").is_file() or (path / "zarr.json").is_file()


def write_ome_zarr(path: str | Path, arr: Any, voxel_size: Sequence[float] | None = None, name: str = "image",
                   levels: int | None = None, chunk: int = 512, progress: ProgressFn = None,
                   cancel: CancelFn = None) -> Path:
    """OME-Zarr (NGFF 0.4, Zarr v2, '/' chunk keys) with a y/x pyramid, streamed by chunk rows of z.

    Pyramid levels are nearest (stride) subsamples, so label values stay valid at every level.
    """
    import zarr

    arr, voxel = _zyx(arr), _voxel(voxel_size)
    z, y, x = (int(s) for s in arr.shape)
    dtype = np.dtype(np.uint8) if np.dtype(arr.dtype) == np.bool_ else np.dtype(arr.dtype)
    n_levels = _pyramid_levels(y, x, levels)
    zc = max(1, min(z, 16, SLAB_BYTES // max(1, y * x * dtype.itemsize)))
    with atomic_dir(path, is_ome_zarr) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        outs = []
        for lv in range(n_levels):
            ly, lx = -(-y // 2 ** lv), -(-x // 2 ** lv)
            outs.append(group.create_array(str(lv), shape=(z, ly, lx), dtype=dtype, fill_value=0,
                                           chunks=(zc, min(chunk, ly), min(chunk, lx)),
                                           chunk_key_encoding={"name": "v2", "separator": "/"}))
        for z0, block in _slabs(arr, zc, progress, cancel):
            for lv, out in enumerate(outs):
                out[z0:z0 + len(block)] = block[:, :: 2 ** lv, :: 2 ** lv]
        group.attrs.update(ome_multiscales(name, n_levels, voxel))
    return Path(path)


# --- NRRD (3D Slicer) -------------------------------------------------------------------------------
def nrrd_header(shape: tuple[int, int, int], dtype: np.dtype, voxel: tuple[float, float, float] | None) -> str:
    """NRRD0004 header: axes listed fastest first (x, y, z), 'space directions' carry the spacing in nm."""
    vz, vy, vx = voxel or (1.0, 1.0, 1.0)
    lines = ["NRRD0004", "# written by ActiveSeg; spacing in nanometres", f"type: {_NRRD_TYPES[dtype.name]}",
             "dimension: 3", "space: left-posterior-superior", f"sizes: {shape[2]} {shape[1]} {shape[0]}",
             f"space directions: ({vx!r},0,0) (0,{vy!r},0) (0,0,{vz!r})", "kinds: domain domain domain",
             "endian: little", "encoding: gzip", "space origin: (0,0,0)"]
    if voxel:
        lines.append('space units: "nm" "nm" "nm"')
    return "\n".join(lines) + "\n\n"


def write_nrrd(path: str | Path, arr: Any, voxel_size: Sequence[float] | None = None,
               progress: ProgressFn = None, cancel: CancelFn = None) -> Path:
    """Gzip NRRD for 3D Slicer (spacing from 'space directions'), streamed slab by slab; readable by pynrrd."""
    arr, path = _zyx(arr), Path(path)
    src = np.dtype(arr.dtype)
    dtype = np.dtype(np.uint8) if src == np.bool_ else np.dtype(np.float32) if src == np.float16 else src
    if dtype.name not in _NRRD_TYPES:
        raise ValueError(f"NRRD cannot hold {src}; use integer or float data")
    header = nrrd_header(tuple(int(s) for s in arr.shape), dtype, _voxel(voxel_size))
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header.encode("ascii"))
        gz = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip container; level 1: EM noise barely compresses
        for _, block in _slabs(arr, progress=progress, cancel=cancel):
            fh.write(gz.compress(np.ascontiguousarray(block, dtype=dtype.newbyteorder("<")).tobytes()))
        fh.write(gz.flush())
    return path


# --- patch pairs, tables ----------------------------------------------------------------------------
def _is_patch_dir(path: Path) -> bool:
    return all(p.name == "patches.csv" or (p.name.startswith(("image_", "mask_")) and p.suffix == ".tif")
               for p in path.iterdir())


def write_patch_pairs(directory: str | Path, volume: Any, labels: Any, patches: Iterable[Any],
                      voxel_size: Sequence[float] | None = None) -> Path:
    """``image_XXX.tif`` + ``mask_XXX.tif`` per patch (z, y, x, size) and a ``patches.csv`` index.

    Masks hold the label values as stored (e.g. 0 unlabeled, 1 background, 2 mitochondria).
    The voxel size defaults to ``volume.voxel_size``; patches must lie inside the volume.
    """
    patches = list(patches)
    shape = tuple(int(s) for s in volume.shape)
    if tuple(int(s) for s in labels.shape) != shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} differs from volume shape {shape}")
    voxel = _voxel(voxel_size if voxel_size is not None else getattr(volume, "voxel_size", None))
    width = max(3, len(str(max(len(patches) - 1, 0))))
    rows = []
    with atomic_dir(directory, _is_patch_dir) as tmp:
        for i, p in enumerate(patches):
            z, y, x, s = int(p.z), int(p.y), int(p.x), int(p.size)
            if not (0 <= z < shape[0] and 0 <= y and y + s <= shape[1] and 0 <= x and x + s <= shape[2] and s > 0):
                raise ValueError(f"patch {i} (z={z}, y={y}, x={x}, size={s}) is not inside the volume {shape}")
            for prefix, src in (("image", volume), ("mask", labels)):
                block = np.asarray(src[z:z + 1, y:y + s, x:x + s])[0]
                dtype = imagej_dtype(block.dtype)
                tifffile.imwrite(tmp / f"{prefix}_{i:0{width}d}.tif", _as_imagej(block, dtype), imagej=True,
                                 **_imagej_kwargs(voxel, "YX"))
            rows.append({"index": i, "image": f"image_{i:0{width}d}.tif", "mask": f"mask_{i:0{width}d}.tif",
                         "z": z, "y": y, "x": x, "size": s})
        _write_rows(tmp / "patches.csv", rows, ["index", "image", "mask", "z", "y", "x", "size"])
    return Path(directory)


def _write_rows(path: Path, rows: Sequence[Any], columns: Sequence[str] | None) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        if rows and not isinstance(rows[0], dict):
            writer = csv.writer(fh)
            if columns:
                writer.writerow(columns)
            writer.writerows(rows)
            return
        cols = list(columns or dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_table_csv(path: str | Path, table: Any, columns: Sequence[str] | None = None) -> Path:
    """CSV from a pandas DataFrame, a dict of columns, or rows (dicts, or sequences with ``columns``)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        if hasattr(table, "to_csv"):
            table.to_csv(tmp, index=False, columns=columns)
        elif isinstance(table, dict):
            keys = list(columns or table)
            n = len(next(iter(table.values()), []))
            _write_rows(tmp, [{k: table[k][i] for k in keys} for i in range(n)], keys)
        else:
            _write_rows(tmp, list(table), columns)
    return path
