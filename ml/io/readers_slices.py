"""A folder of 2D TIFF/PNG slices (or one 2D image) as a lazy stack: one file read per z.

EM sections often arrive as numbered image files. Only headers are read at open (to
check that every slice has the same size and type); pixel data is read when a slice is
indexed. Files sort naturally, so 2.tif comes before 10.tif.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tifffile
from PIL import PngImagePlugin

from ml.io.errors import cannot_read
from ml.io.readers_axes import norm_key, single_channel
from ml.io.readers_tiff import TIFF_SUFFIXES

SLICE_SUFFIXES = TIFF_SUFFIXES + (".png",)
# Pillow mode -> (numpy dtype after reading, number of channels incl. alpha)
_PNG_MODES = {"1": ("uint8", 1), "L": ("uint8", 1), "P": ("uint8", 1), "I;16": ("uint16", 1),
              "I;16B": ("uint16", 1), "I;16L": ("uint16", 1), "I": ("int32", 1), "F": ("float32", 1),
              "LA": ("uint8", 2), "RGB": ("uint8", 3), "RGBA": ("uint8", 4)}


class SliceProblem(ValueError):
    """Slices that cannot form one volume (readers add the folder path)."""


class SliceHeader(NamedTuple):
    shape: tuple[int, int]
    dtype: np.dtype
    channels: int


def natural_key(name: str) -> list[Any]:
    """Sort key treating digit runs as numbers: 'img2' < 'img10'; case-insensitive otherwise."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_slices(folder: Path) -> list[Path]:
    """Image files in ``folder`` in natural order; hidden files are skipped, mixing TIFF and PNG is refused."""
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SLICE_SUFFIXES]
    kinds = {"png" if p.suffix.lower() == ".png" else "tiff" for p in files}
    if len(kinds) > 1:
        raise SliceProblem("the folder mixes TIFF and PNG slices; keep one kind per volume")
    return sorted(files, key=lambda p: natural_key(p.name))


def read_header(path: Path) -> SliceHeader:
    """Shape, dtype and channel count from the file header (no pixel data read)."""
    if path.suffix.lower() == ".png":
        with PngImagePlugin.PngImageFile(str(path)) as im:
            if im.mode not in _PNG_MODES:
                raise SliceProblem(f"{path.name}: PNG mode {im.mode!r} is not supported")
            dtype, channels = _PNG_MODES[im.mode]
            return SliceHeader((im.size[1], im.size[0]), np.dtype(dtype), channels)
    with tifffile.TiffFile(path) as tf:
        if not tf.series:
            raise SliceProblem(f"{path.name}: no image in the TIFF")
        s = tf.series[0]
        shape, axes = tuple(int(v) for v in s.shape), s.axes
        if axes == "YX":
            channels = 1
        elif axes == "YXS":
            channels = shape[2]
        else:
            raise SliceProblem(f"{path.name} is not a 2D image (shape {shape}, axes {axes}); a folder must hold "
                               "one 2D slice per file")
        dtype = np.dtype(np.uint8) if s.dtype == np.bool_ else np.dtype(s.dtype)
        return SliceHeader(shape[:2], dtype, channels)


def read_pixels(path: Path) -> np.ndarray:
    """Decode one slice to a 2D array; 1-bit images become 0/255 uint8 (like Pillow's convert('L'))."""
    if path.suffix.lower() == ".png":
        with PngImagePlugin.PngImageFile(str(path)) as im:
            mode = im.mode
            arr = np.asarray(im)
        if mode in ("LA", "RGBA"):
            arr = arr[..., :-1]  # drop alpha
    else:
        arr = tifffile.imread(path, key=0)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
    return single_channel(arr, str(path)) if arr.ndim == 3 else arr


class SliceStack:
    """(Z, Y, X) array-like over slice files; each access reads only the z slices it needs."""

    def __init__(self, files: list[Path], header: SliceHeader):
        self.files = list(files)
        self.dtype = header.dtype
        self.channels = header.channels
        self.shape = (len(self.files), *header.shape)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def read_slice(self, z: int) -> np.ndarray:
        path = self.files[z]
        try:
            arr = read_pixels(path)
        except (OSError, SyntaxError, ValueError, tifffile.TiffFileError) as exc:
            raise cannot_read(path, f"slice {z} could not be decoded ({exc})") from exc
        if arr.shape != self.shape[1:] or arr.dtype != self.dtype:
            raise cannot_read(path, f"slice {z} is {arr.shape} {arr.dtype}, expected {self.shape[1:]} {self.dtype}")
        return arr

    def __getitem__(self, key: Any) -> np.ndarray:
        kz, ky, kx = norm_key(key)
        if isinstance(kz, slice):
            zs = range(*kz.indices(self.shape[0]))
            if not len(zs):
                return np.zeros((0, *self.shape[1:]), self.dtype)[:, ky, kx]
            return np.stack([self.read_slice(z)[ky, kx] for z in zs])
        if not -self.shape[0] <= kz < self.shape[0]:
            raise IndexError(f"slice {kz} out of range for {self.shape[0]} slices")
        return self.read_slice(kz % self.shape[0])[ky, kx]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self[:]
        return arr.astype(dtype) if dtype is not None else arr


def _header(path: Path) -> SliceHeader:
    try:
        return read_header(path)
    except (OSError, SyntaxError, ValueError, tifffile.TiffFileError) as exc:
        if isinstance(exc, SliceProblem):
            raise
        raise SliceProblem(f"{path.name} is not a readable image ({type(exc).__name__}: {exc})") from exc


def open_slices(files: list[Path]) -> SliceStack:
    """Check every header agrees with the first, then return the lazy stack."""
    if not files:
        raise SliceProblem("no TIFF or PNG slices found")
    first = _header(files[0])
    for path in files[1:]:
        h = _header(path)
        if h.shape != first.shape or h.dtype != first.dtype:
            raise SliceProblem(f"slices differ: {files[0].name} is {first.shape[1]}x{first.shape[0]} {first.dtype}, "
                               f"{path.name} is {h.shape[1]}x{h.shape[0]} {h.dtype}; all slices must share size "
                               "and type")
    return SliceStack(files, first)
