"""TIFF / OME-TIFF / ImageJ TIFF: memmap when contiguous, otherwise lazy chunk reads.

Uncompressed EM stacks are memory-mapped (the OS pages in only what is viewed);
compressed or tiled files go through tifffile's zarr store, which decodes one page or
tile per access. Either way opening reads headers only.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import tifffile
import zarr

from ml.io.readers_axes import to_zyx
from ml.io.readers_meta import Opened, VoxelSize, complete_voxel, nm_per_unit

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
_RESOLUTION_UNIT_NM = {2: 2.54e7, 3: 1e7}  # TIFF ResolutionUnit: 2 = inch, 3 = centimetre


class TiffProblem(ValueError):
    """A TIFF that opens but is not a usable volume (readers add the path)."""


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile logs what it finds wrong with a damaged file before we refuse it with one line
    of our own; on a terminal that is three lines of noise before the message that matters."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def open_tiff(path: Path) -> Opened:
    """Open the first image series of a TIFF lazily as (Z, Y, X)."""
    with _quiet_tifffile():
        return _open_tiff(path)


def _open_tiff(path: Path) -> Opened:
    tf = tifffile.TiffFile(path)
    try:
        if not tf.series:
            raise TiffProblem("the TIFF holds no image series")
        series = tf.series[0]
        _check_complete(series, os.path.getsize(path))
        raw = _memmap(path, series)
        data = to_zyx(raw if raw is not None else _zarr_pages(series), series.axes, str(path))
        voxel = tiff_voxel(tf, data.shape[0])
    except BaseException:
        tf.close()
        raise
    if raw is not None:  # the memmap holds its own mapping; the header reader is done
        tf.close()
        return Opened(data, voxel, None)
    return Opened(data, voxel, tf.close)


def _memmap(path: Path, series: tifffile.TiffPageSeries) -> Any:
    """np.memmap of contiguous uncompressed data, or None when the layout does not allow it."""
    if series.dataoffset is None:
        return None
    try:
        return tifffile.memmap(path, series=0, mode="r")
    except (ValueError, OSError):
        return None


def _zarr_pages(series: tifffile.TiffPageSeries) -> Any:
    """Read-only zarr array decoding one page/tile per chunk; reads are serialised on the file handle."""
    store = series.aszarr(level=0, lock=threading.RLock())
    node = zarr.open(store, mode="r")
    return node if isinstance(node, zarr.Array) else node["0"]


def _check_complete(series: tifffile.TiffPageSeries, file_size: int) -> None:
    """A file cut short (interrupted copy) fails here at open rather than at some later slice."""
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
    else:
        last = series.pages[-1] if len(series.pages) else None
        offsets = getattr(last, "dataoffsets", ()) or ()
        counts = getattr(last, "databytecounts", ()) or ()
        end = max((o + c for o, c in zip(offsets, counts)), default=0)
    if end > file_size:
        raise TiffProblem(f"the file is truncated: image data end at byte {end} but the file has {file_size} bytes")


def tiff_voxel(tf: tifffile.TiffFile, depth: int) -> VoxelSize | None:
    """Voxel size in nm from OME PhysicalSize*, ImageJ unit/spacing/resolution, or TIFF resolution tags."""
    if tf.is_ome and tf.ome_metadata:
        voxel = ome_xml_voxel(tf.ome_metadata, depth)
        if voxel:
            return voxel
    page = tf.pages.first
    xres, yres = _resolution(page, "XResolution"), _resolution(page, "YResolution")
    if tf.is_imagej:
        meta = tf.imagej_metadata or {}
        scale = nm_per_unit(meta.get("unit"))
        if scale is None or not xres or not yres:
            return None
        spacing = meta.get("spacing")
        return complete_voxel(float(spacing) * scale if spacing else None, scale / yres, scale / xres, depth)
    unit_tag = page.tags.get("ResolutionUnit")
    scale = _RESOLUTION_UNIT_NM.get(int(unit_tag.value)) if unit_tag is not None else None
    if scale is None or not xres or not yres:
        return None
    return complete_voxel(None, scale / yres, scale / xres, depth)


def _resolution(page: Any, name: str) -> float | None:
    """Pixels per unit from a rational resolution tag (None when absent or zero)."""
    tag = page.tags.get(name)
    if tag is None:
        return None
    value = tag.value
    try:
        num, den = value if isinstance(value, tuple) else (value, 1)
        res = float(num) / float(den)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return res if res > 0 else None


def ome_xml_voxel(xml: str, depth: int) -> VoxelSize | None:
    """PhysicalSizeZ/Y/X (+ units, default µm) of the first OME Pixels element, in nm."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)
    if pixels is None:
        return None
    sizes = {}
    for ax in "ZYX":
        value = pixels.get(f"PhysicalSize{ax}")
        scale = nm_per_unit(pixels.get(f"PhysicalSize{ax}Unit", "µm"))
        sizes[ax] = float(value) * scale if value is not None and scale is not None else None
    return complete_voxel(sizes["Z"], sizes["Y"], sizes["X"], depth)
