"""HDF5 (h5py) and MRC (mrcfile) volumes, both kept lazy.

An h5py dataset reads only the hyperslab that is indexed; an MRC file is memory-mapped.
The file stays open for the Volume's lifetime and closes with it.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ml.io.readers_axes import AxisProblem, attrs_voxel, guess_axes, to_zyx
from ml.io.readers_meta import Opened, complete_voxel

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
MRC_SUFFIXES = (".mrc", ".mrcs", ".rec", ".st", ".ali", ".map")


class ContainerProblem(ValueError):
    """An HDF5/MRC file that opens but holds no usable volume (readers add the path)."""


def open_hdf5(path: Path, dataset: str | None = None) -> Opened:
    """The named dataset, or the file's only 2D/3D(-squeezable) dataset."""
    import h5py

    f = h5py.File(path, "r")
    try:
        ds = _pick_dataset(f, dataset)
        data = to_zyx(ds, None, f"{path}:{ds.name}")
        voxel = attrs_voxel([dict(ds.attrs), dict(ds.parent.attrs)], ds.shape, data.shape[0])
    except BaseException:
        f.close()
        raise
    return Opened(data, voxel, f.close)


def _pick_dataset(f: Any, dataset: str | None) -> Any:
    import h5py

    found: dict[str, Any] = {}

    def collect(name: str, obj: Any) -> None:  # returning None keeps visititems going
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    f.visititems(collect)
    listing = ", ".join(f"/{n} {tuple(d.shape)} {d.dtype}" for n, d in found.items()) or "no datasets"
    if dataset:
        obj = f.get(dataset)
        if not isinstance(obj, h5py.Dataset):
            raise ContainerProblem(f"no dataset {dataset!r} in the file; it holds {listing}")
        return obj
    usable = [d for d in found.values() if _is_image(d.shape)]
    if len(usable) != 1:
        what = "no 2D/3D image dataset" if not usable else f"{len(usable)} image datasets"
        raise ContainerProblem(f"{what} found ({listing}); pass dataset= with the path of the one to open")
    return usable[0]


def _is_image(shape: tuple[int, ...]) -> bool:
    try:
        guess_axes(tuple(shape))
    except AxisProblem:
        return False
    return len(shape) >= 2 and sum(s > 1 for s in shape) >= 2


def open_mrc(path: Path) -> Opened:
    """Memory-map an MRC file; header voxel size (Angstrom) becomes nm. Damaged headers are read leniently."""
    import mrcfile

    try:
        mrc = mrcfile.mmap(path, mode="r")
    except ValueError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mrc = mrcfile.mmap(path, mode="r", permissive=True)
    try:
        if mrc.data is None:
            raise ContainerProblem("the MRC header is unreadable or the file holds no data")
        data = to_zyx(mrc.data, "ZYX"[-mrc.data.ndim:] if mrc.data.ndim <= 3 else None, str(path))
        vs = mrc.voxel_size
        voxel = complete_voxel(float(vs.z) / 10.0, float(vs.y) / 10.0, float(vs.x) / 10.0, data.shape[0])
    except BaseException:
        mrc.close()
        raise
    return Opened(data, voxel, mrc.close)
