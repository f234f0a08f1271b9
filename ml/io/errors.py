"""Typed errors for volume files, with messages that say what was wrong and what would work.

A user pointing the app at the wrong file should read, in one line, why it failed and
which formats it accepts, instead of a library traceback.
"""
from __future__ import annotations

from pathlib import Path

SUPPORTED_FORMATS = (
    "multi-page TIFF / OME-TIFF (.tif, .tiff, .btf), a folder of 2D TIFF or PNG slices (same size and type), "
    "Zarr v2/v3 or OME-Zarr (a folder, usually .zarr), HDF5 (.h5, .hdf5, .hdf, .he5) with one 3D dataset or a "
    "dataset path, MRC (.mrc, .mrcs, .rec, .st, .ali, .map); a single 2D TIFF/PNG image opens as one slice; "
    "grey values only (RGB only when R = G = B); extra axes only when of size 1"
)


class VolumeFormatError(ValueError):
    """The file or folder cannot be read as a 3D volume (message lists what is accepted).

    ``short`` is the same message without the list of accepted formats, for a terminal line
    that points to ``--help`` instead of repeating the list every time.
    """

    def __init__(self, message: str, short: str | None = None):
        super().__init__(message)
        self.short = short or message


class VolumeNotFoundError(VolumeFormatError, FileNotFoundError):
    """The path does not exist (also a FileNotFoundError, for callers that catch that)."""


def cannot_open(path: str | Path, problem: str) -> VolumeFormatError:
    """The standard message: which path, what was wrong, what is accepted."""
    short = f"Cannot open {str(path)!r} as a volume: {problem}"
    return VolumeFormatError(f"{short}. Accepted: {SUPPORTED_FORMATS}.", short)


def not_found(path: str | Path) -> VolumeNotFoundError:
    """The path does not exist: the standard message, without 'as a volume' (nothing was opened)."""
    short = f"Cannot open {str(path)!r}: no such file or folder"
    return VolumeNotFoundError(f"{short}. Accepted: {SUPPORTED_FORMATS}.", short)


def cannot_read(path: str | Path, problem: str) -> VolumeFormatError:
    """A failure found while reading data after a successful open (damaged chunk, differing slice)."""
    return VolumeFormatError(f"Cannot read {str(path)!r}: {problem}.")
