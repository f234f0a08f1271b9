"""A lazy 3D volume: every reader returns one, every consumer reads through it.

Wrapping the backing store (numpy memmap, zarr array, h5py dataset, per-slice files)
behind one small class means nothing downstream ever loads a whole volume by accident.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

VoxelSize = tuple[float, float, float]


def as_voxel_size(value: Sequence[float] | None) -> VoxelSize | None:
    """Validate a voxel size: three positive finite numbers (z, y, x) in nm, or None."""
    if value is None or len(value) == 0:
        return None
    try:
        vs = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        vs = ()
    if len(vs) != 3 or not all(np.isfinite(v) and v > 0 for v in vs):
        raise ValueError(f"voxel_size must be three positive numbers (z, y, x) in nm, got {value!r}")
    return vs  # type: ignore[return-value]


def voxel_size_or_unit(value: Sequence[float] | None) -> VoxelSize:
    """``as_voxel_size`` for measurements: unit voxels (1, 1, 1) when none is known."""
    return as_voxel_size(value) or (1.0, 1.0, 1.0)


NM3_PER_UM3 = 1e9


def voxel_volume_um3(voxel_size: Sequence[float]) -> float:
    """One voxel's volume in µm³ (``voxel_size`` (z, y, x) in nm; ValueError when it is not known)."""
    vs = as_voxel_size(voxel_size)
    if vs is None:
        raise ValueError("the voxel size is not known")
    return vs[0] * vs[1] * vs[2] / NM3_PER_UM3


def voxels_for_volume(volume_um3: float, voxel_size: Sequence[float]) -> int:
    """The fewest whole voxels that hold ``volume_um3`` µm³: a size filter typed in physical units, for an
    engine that counts voxels (an object of that many voxels or more is at least that big)."""
    return max(0, math.ceil(float(volume_um3) / voxel_volume_um3(voxel_size) - 1e-9))


class Volume:
    """Read-only (Z, Y, X) view over an array-like; indexing returns numpy arrays."""

    def __init__(
        self,
        data: Any,
        voxel_size: Sequence[float] | None = None,
        path: str | Path | None = None,
        name: str | None = None,
        closer: Callable[[], None] | None = None,
    ):
        if len(data.shape) != 3:
            raise ValueError(f"Volume needs 3 axes (Z, Y, X), got shape {tuple(data.shape)}")
        self._data = data
        self.voxel_size: VoxelSize | None = as_voxel_size(voxel_size)
        self.path = str(path) if path is not None else None
        self.name = name or (Path(path).name if path else "array")
        self._closer = closer
        self._percentiles: dict[tuple[float, float], tuple[float, float]] = {}

    @classmethod
    def from_array(cls, arr: np.ndarray, voxel_size: Sequence[float] | None = None, name: str = "array") -> "Volume":
        """Wrap an in-memory array; a 2D image becomes a depth-1 volume."""
        arr = np.asarray(arr)
        if arr.ndim == 2:
            arr = arr[None]
        return cls(arr, voxel_size=voxel_size, name=name)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self._data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._data.dtype)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self._data[key])

    def __len__(self) -> int:
        return self.shape[0]

    def slice(self, z: int) -> np.ndarray:
        """One xy plane as a 2D array."""
        return self[int(z)]

    def plane(self, axis: str, index: int) -> np.ndarray:
        """One orthogonal plane: 'xy' (fixed z), 'xz' (fixed y, rows = z), 'yz' (fixed x, rows = z)."""
        if axis == "xy":
            return self[int(index)]
        if axis == "xz":
            return self[:, int(index), :]
        if axis == "yz":
            return self[:, :, int(index)]
        raise ValueError(f"unknown plane {axis!r}; use 'xy', 'xz' or 'yz'")

    def percentiles(self, lo: float = 1.0, hi: float = 99.5, max_slices: int = 16, max_pixels: int = 2_000_000) -> tuple[float, float]:
        """Intensity percentiles from a sample of evenly spaced slices (never the whole volume).

        NaN and inf voxels are left out: one of them would otherwise make the window NaN.
        """
        key = (lo, hi)
        if key not in self._percentiles:
            z = self.shape[0]
            zs = np.unique(np.linspace(0, z - 1, min(z, max_slices)).astype(int))
            per = max(1, max_pixels // len(zs))
            rng = np.random.default_rng(0)
            samples = []
            for zi in zs:
                s = self.slice(zi).ravel()
                if s.size > per:
                    s = s[rng.choice(s.size, per, replace=False)]
                samples.append(s.astype(np.float32))
            allv = np.concatenate(samples)
            allv = allv[np.isfinite(allv)]
            if allv.size == 0:
                raise ValueError(f"{self.name} holds no finite grey values in the sampled slices (all NaN or inf)")
            p_lo, p_hi = np.percentile(allv, [lo, hi])
            if p_hi <= p_lo:
                p_hi = p_lo + 1.0
            self._percentiles[key] = (float(p_lo), float(p_hi))
        return self._percentiles[key]

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None

    def __enter__(self) -> "Volume":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Volume(name={self.name!r}, shape={self.shape}, dtype={self.dtype}, voxel_size={self.voxel_size})"
