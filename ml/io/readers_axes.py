"""Bring any N-D array-like to a lazy (Z, Y, X) view.

Files come as (Y, X), (Y, X, RGB), TCZYX with singleton axes, and so on. Instead of
reading and reshaping, a small view maps each (z, y, x) index onto the source's axes,
so memmaps, zarr and h5py stay lazy and only the indexed block is ever read.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ml.io.errors import cannot_read
from ml.io.readers_meta import VoxelSize, voxel_from_attrs

COLOUR_AXES = "SC"  # samples (RGB) and channels: allowed only when all their values are equal
GREY_ONLY = ("its colour channels differ; only grey images are accepted (RGB reads as grey when R = G = B). "
             "Convert it to greyscale first")


class AxisProblem(ValueError):
    """The array's axes do not describe one grey 3D volume (reader adds the path)."""


@dataclass(frozen=True)
class AxisPlan:
    """Which source axis plays z, y, x and colour; every other axis is fixed at index 0."""

    z: int | None
    y: int
    x: int
    channel: int | None

    def is_identity(self, ndim: int) -> bool:
        return ndim == 3 and (self.z, self.y, self.x, self.channel) == (0, 1, 2, None)


def guess_axes(shape: tuple[int, ...]) -> str:
    """Axes for arrays without metadata: the non-singleton axes are (Y,X), (Z,Y,X) or (Z,Y,X,RGB)."""
    nd = len(shape)
    if nd < 2:
        raise AxisProblem(f"data has {nd} dimension(s); a volume needs 2 (Y, X) or 3 (Z, Y, X)")
    if nd >= 4 and shape[-1] in (3, 4):  # (..., Z, Y, X, RGB[A])
        return guess_axes(shape[:-1]) + "S"
    big = [i for i, s in enumerate(shape) if s > 1]
    if len(big) < 2:  # tiny or degenerate: the last axes are the image
        big = list(range(max(0, nd - 3), nd))
    if len(big) in (2, 3):
        names = "ZYX"[3 - len(big):]
    else:
        raise AxisProblem(f"shape {tuple(shape)} has {len(big)} axes longer than 1; only 2D (Y, X) and "
                          "3D (Z, Y, X) data are accepted (save a single channel / time point)")
    letters = ["Q"] * nd
    for i, name in zip(big, names):
        letters[i] = name
    return "".join(letters)


def plan_axes(shape: tuple[int, ...], axes: str | None = None) -> AxisPlan:
    """Pick z/y/x/colour axes; singleton extras are squeezed, a second non-singleton axis is an error.

    Colour axes (S, or C beside a real stack axis) must hold equal values; a lone C axis is the stack.
    """
    shape = tuple(int(s) for s in shape)
    axes = (axes or guess_axes(shape)).upper()
    if len(axes) != len(shape):
        raise AxisProblem(f"axes {axes!r} do not match shape {shape}")
    if "Y" not in axes or "X" not in axes:
        raise AxisProblem(f"no Y and X axes in {axes!r} (shape {shape})")
    y, x = axes.index("Y"), axes.index("X")
    rest = [i for i in range(len(shape)) if i not in (y, x)]
    colour = [i for i in rest if axes[i] in COLOUR_AXES and shape[i] > 1]
    stack = [i for i in rest if i not in colour and shape[i] > 1]
    if not stack and len(colour) == 1 and axes[colour[0]] == "C":
        colour = []  # a lone 'channel' axis is a mislabelled stack (ImageJ files saved without axes)
    if len(colour) > 1:
        raise AxisProblem(f"shape {shape} (axes {axes}) has several channel axes")
    channel = colour[0] if colour else None
    others = [i for i in rest if i != channel and shape[i] > 1]
    if len(others) > 1:
        raise AxisProblem(_too_many_axes(shape, axes, others))
    if others:
        z = others[0]
    else:
        z = axes.index("Z") if "Z" in axes else next((i for i in rest if i != channel), None)
    return AxisPlan(z=z, y=y, x=x, channel=channel)


def _too_many_axes(shape: tuple[int, ...], axes: str, others: list[int]) -> str:
    """Name the extra axes only when the file did: 'Q' is tifffile's word for 'unknown'."""
    what = f"{len(others) + 2}-D image {shape}"
    if all(axes[i] != "Q" for i in others):
        what += f" (axes {axes}: " + ", ".join(f"{axes[i]}={shape[i]}" for i in others) + " besides Y and X)"
    return f"{what}; expected a 3-D (Z, Y, X) stack (save a single channel / time point)"


def norm_key(key: Any) -> tuple[Any, Any, Any]:
    """(z, y, x) key of ints and slices; Ellipsis and missing trailing axes become full slices."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1:]
    if len(key) > 3:
        raise IndexError(f"too many indices for a (Z, Y, X) volume: {len(key)}")
    out = []
    for k in key + (slice(None),) * (3 - len(key)):
        if isinstance(k, slice):
            out.append(k)
        else:
            try:
                out.append(operator.index(k))
            except TypeError:
                raise TypeError(f"volumes are indexed with ints and slices, got {type(k).__name__}") from None
    return out[0], out[1], out[2]


def single_channel(block: np.ndarray, where: str) -> np.ndarray:
    """Drop a last colour axis whose channels are equal (grey stored as RGB); raise otherwise."""
    first = block[..., 0]
    if block.shape[-1] > 1 and not (block == first[..., None]).all():
        raise cannot_read(where, GREY_ONLY)
    return first


class AxesView:
    """Lazy (Z, Y, X) view of an N-D array-like according to an :class:`AxisPlan`."""

    def __init__(self, source: Any, plan: AxisPlan, where: str):
        self.source, self.plan, self.where = source, plan, where
        self.dtype = np.dtype(source.dtype)
        s = tuple(int(v) for v in source.shape)
        self.shape = (s[plan.z] if plan.z is not None else 1, s[plan.y], s[plan.x])
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        kz, ky, kx = norm_key(key)
        p = self.plan
        src_key: list[Any] = [0] * len(self.source.shape)
        roles = {p.y: ("y", ky), p.x: ("x", kx)}
        if p.z is not None:
            roles[p.z] = ("z", kz)
        if p.channel is not None:
            roles[p.channel] = ("c", slice(None))
        for axis, (_, k) in roles.items():
            src_key[axis] = k
        block = np.asarray(self.source[tuple(src_key)])
        kept = [roles[a][0] for a in sorted(roles) if isinstance(roles[a][1], slice)]
        block = np.transpose(block, [kept.index(r) for r in "zyxc" if r in kept])
        if p.channel is not None:
            block = single_channel(block, self.where)
        if p.z is None:
            block = np.expand_dims(block, 0)[(kz,)]
        return block

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self[:]
        return arr.astype(dtype) if dtype is not None else arr


def to_zyx(source: Any, axes: str | None, where: str) -> Any:
    """A (Z, Y, X) array-like over ``source``: numpy views stay numpy (memmap-backed), others get a view."""
    plan = plan_axes(tuple(source.shape), axes)
    if plan.is_identity(len(source.shape)):
        return source
    if isinstance(source, np.ndarray) and plan.channel is None:
        idx = [0] * source.ndim
        for a in (plan.z, plan.y, plan.x):
            if a is not None:
                idx[a] = slice(None)
        order = sorted(a for a in (plan.z, plan.y, plan.x) if a is not None)
        view = source[tuple(idx)].transpose([order.index(a) for a in (plan.z, plan.y, plan.x) if a is not None])
        return view if plan.z is not None else view[np.newaxis]
    return AxesView(source, plan, where)


class MappedView:
    """Lazy elementwise map of a (Z, Y, X) array-like (e.g. labels nonzero -> 1)."""

    def __init__(self, source: Any, fn: Callable[[np.ndarray], np.ndarray], dtype: Any):
        self.source, self.fn, self.dtype = source, fn, np.dtype(dtype)
        self.shape = tuple(int(s) for s in source.shape)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.fn(np.asarray(self.source[key])), dtype=self.dtype)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self[:]
        return arr.astype(dtype) if dtype is not None else arr


def attrs_voxel(attr_sets: list[dict], shape: tuple[int, ...], depth: int) -> VoxelSize | None:
    """First voxel size found in these attribute dicts, reading per-axis vectors at the z/y/x axes."""
    plan = plan_axes(tuple(shape), None)
    for attrs in attr_sets:
        voxel = voxel_from_attrs(attrs, depth, (plan.z, plan.y, plan.x), len(shape))
        if voxel:
            return voxel
    return None
