"""Open any supported volume file lazily as a :class:`ml.volume.Volume`.

One entry point picks the reader from the path (folder, Zarr store or file suffix),
turns every library failure into a :class:`VolumeFormatError` that names the problem and
the accepted formats, and never reads pixel data beyond a sample slice or two.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tifffile

from ml.io.errors import SUPPORTED_FORMATS, VolumeFormatError, cannot_open, not_found
from ml.io.readers_axes import GREY_ONLY, AxesView, AxisProblem, MappedView
from ml.io.readers_hdf5_mrc import HDF5_SUFFIXES, MRC_SUFFIXES, ContainerProblem, open_hdf5, open_mrc
from ml.io.readers_meta import Opened
from ml.io.readers_slices import SliceProblem, SliceStack, list_slices, open_slices
from ml.io.readers_tiff import TIFF_SUFFIXES, TiffProblem, open_tiff, tiff_voxel
from ml.io.readers_zarr import ZarrProblem, is_zarr_dir, open_zarr
from ml.volume import Volume, as_voxel_size

__all__ = ["SUPPORTED_FORMATS", "VolumeFormatError", "open_volume", "open_labels"]

_PROBLEMS = (AxisProblem, ContainerProblem, SliceProblem, TiffProblem, ZarrProblem)
_GREY_KINDS = "biuf"  # bool, signed/unsigned integers, floats


def open_volume(path: str | Path, dataset: str | None = None,
                voxel_size: Sequence[float] | None = None) -> Volume:
    """Open a volume without reading it; ``voxel_size`` (z, y, x nm) overrides what the file says."""
    override = as_voxel_size(voxel_size)
    p = Path(path).expanduser()
    opened = _open(p, dataset)
    return _volume(p, dataset, opened.data, override or opened.voxel_size, opened.closer)


#: Smallest slice side of a volume to segment: below it there is no structure to find (it is
#: usually a table, a thumbnail, or axes read in the wrong order).
MIN_SIDE = 16


def check_segmentable(volume: Volume) -> Volume:
    """Refuse a volume too small to segment (the CLI and the app call it on what the user gives)."""
    _, h, w = (int(s) for s in volume.shape)
    if min(h, w) < MIN_SIDE:
        raise cannot_open(Path(str(volume.path or volume.name)), f"its slices are {h} x {w} px; a volume to "
                          f"segment needs at least {MIN_SIDE} x {MIN_SIDE} px per slice (is it a table, a "
                          "thumbnail, or a stack with its axes mixed up?)")
    return volume


def open_labels(path: str | Path, dataset: str | None = None, voxel_size: Sequence[float] | None = None,
                binarize: bool = False, threshold: float | None = None) -> Volume:
    """Open a dense label volume (integer values, e.g. 0/255 masks), lazily.

    ``binarize=True`` maps foreground to 1 and background to 0 on every read: foreground is
    nonzero, or ``> threshold`` when one is given (e.g. 127 for anti-aliased 0/255 masks).
    Boolean data reads as uint8 0/1; float data needs ``binarize``.
    """
    override = as_voxel_size(voxel_size)
    p = Path(path).expanduser()
    opened = _open(p, dataset)
    data, kind = opened.data, np.dtype(opened.data.dtype).kind
    if binarize:
        fn = (lambda a: a != 0) if threshold is None else (lambda a: a > threshold)
        data = MappedView(data, fn, np.uint8)
    elif kind == "b":
        data = MappedView(data, lambda a: a, np.uint8)
    elif kind == "f":
        _close(opened)
        raise cannot_open(p, f"labels must be integers but the data are {data.dtype}; pass binarize=True "
                             "to read nonzero (or > threshold) as 1")
    return _volume(p, dataset, data, override or opened.voxel_size, opened.closer)


def _volume(p: Path, dataset: str | None, data: Any, voxel: Any, closer: Any) -> Volume:
    name = f"{p.name}/{dataset.strip('/')}" if dataset else p.name
    return Volume(data, voxel_size=voxel, path=p, name=name, closer=closer)


def _open(p: Path, dataset: str | None) -> Opened:
    """Dispatch, translate library errors, then check the result is one grey 3D volume."""
    if not p.exists():
        raise not_found(p)
    try:
        opened = _dispatch(p, dataset)
    except VolumeFormatError:
        raise
    except _PROBLEMS as exc:
        raise cannot_open(p, str(exc)) from exc
    except (OSError, ValueError, KeyError, TypeError, SyntaxError, IndexError, tifffile.TiffFileError) as exc:
        raise cannot_open(p, f"it is not a readable {_kind(p)} ({type(exc).__name__}: {exc})") from exc
    try:
        return _checked(p, opened)
    except BaseException:
        _close(opened)
        raise


def _dispatch(p: Path, dataset: str | None) -> Opened:
    if p.is_dir():
        if is_zarr_dir(p):
            return open_zarr(p, dataset)
        _no_dataset(dataset, "a folder of slices")
        files = list_slices(p)
        if not files:
            seen = sorted(x.name for x in p.iterdir() if not x.name.startswith("."))
            raise SliceProblem("the folder is empty" if not seen else
                               f"the folder holds no TIFF/PNG slices and is not a Zarr store (found: "
                               f"{', '.join(seen[:5])}{', ...' if len(seen) > 5 else ''})")
        return Opened(open_slices(files), _slices_voxel(files))
    if p.stat().st_size == 0:
        raise SliceProblem("the file is empty (0 bytes)")
    suffix = p.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return open_hdf5(p, dataset)
    _no_dataset(dataset, f"a {suffix} file")
    if suffix in TIFF_SUFFIXES:
        return open_tiff(p)
    if suffix == ".png":
        return Opened(open_slices([p]), None)
    if suffix in MRC_SUFFIXES:
        return open_mrc(p)
    hint = " (a zipped Zarr: unzip it first)" if zipfile.is_zipfile(p) else ""
    raise SliceProblem(f"the file type {suffix or '(no extension)'!r} is not supported{hint}")


def _no_dataset(dataset: str | None, what: str) -> None:
    if dataset:
        raise SliceProblem(f"dataset={dataset!r} was given but {what} has no datasets (only HDF5 and Zarr do)")


def _slices_voxel(files: list[Path]) -> Any:
    """Calibration of a slice folder from the first TIFF's header (xy only unless ImageJ spacing is set)."""
    if files[0].suffix.lower() == ".png":
        return None
    with tifffile.TiffFile(files[0]) as tf:
        return tiff_voxel(tf, len(files))


def _kind(p: Path) -> str:
    if p.is_dir():
        return "Zarr store" if is_zarr_dir(p) else "folder of slices"
    s = p.suffix.lower()
    for suffixes, name in ((TIFF_SUFFIXES, "TIFF file"), (HDF5_SUFFIXES, "HDF5 file"), (MRC_SUFFIXES, "MRC file"),
                           ((".png",), "PNG file")):
        if s in suffixes:
            return name
    return "volume file"


def _checked(p: Path, opened: Opened) -> Opened:
    """Refuse empty or non-grey data, sample colour channels, and give native byte order."""
    data = opened.data
    dtype = np.dtype(data.dtype)
    if dtype.kind not in _GREY_KINDS or dtype.fields is not None:
        raise cannot_open(p, f"data type {dtype} is not a grey image type (use integers or floats)")
    if 0 in tuple(data.shape):
        raise cannot_open(p, f"the volume is empty (shape {tuple(data.shape)})")
    _check_slice_fits(p, tuple(data.shape), dtype)
    coloured = (isinstance(data, AxesView) and data.plan.channel is not None) or \
        (isinstance(data, SliceStack) and data.channels > 1)
    if coloured:
        for z in sorted({0, data.shape[0] // 2, data.shape[0] - 1}):
            try:
                data[z]
            except VolumeFormatError:
                raise cannot_open(p, GREY_ONLY) from None
    if not dtype.isnative:
        native = dtype.newbyteorder("=")
        data = MappedView(data, lambda a: a.astype(native), native)
    return Opened(data, opened.voxel_size, opened.closer)


def _check_slice_fits(p: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Every consumer reads whole slices: one larger than this machine's RAM means a damaged
    header (or a file for a bigger machine), better said now than as 'out of memory' later."""
    import psutil

    _, h, w = (int(s) for s in shape)
    need, ram = h * w * dtype.itemsize, psutil.virtual_memory().total
    if need > ram:
        raise cannot_open(p, f"the image is too large: the header claims {h} x {w} pixels per slice "
                             f"({need / 2**30:,.0f} GiB of {dtype}, more than this machine's {ram / 2**30:,.0f} GiB "
                             "of RAM); the file may be damaged")


def _close(opened: Opened) -> None:
    if opened.closer is not None:
        opened.closer()
