"""Zarr v2/v3 and OME-Zarr (NGFF 0.4 / 0.5): the full-resolution level, lazily.

Zarr arrays are chunked on disk and read chunk by chunk, so opening one costs a few
metadata files whatever its size. For OME-Zarr the first multiscales dataset is the
full-resolution image and its scale transform (with units) gives the voxel size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import zarr

from ml.io.readers_axes import attrs_voxel, to_zyx
from ml.io.readers_meta import Opened, VoxelSize, complete_voxel, nm_per_unit

_AXIS_LETTERS = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}
_TYPE_LETTERS = {"time": "T", "channel": "C"}


class ZarrProblem(ValueError):
    """A Zarr store that opens but does not name one image (readers add the path)."""


def is_zarr_dir(path: Path) -> bool:
    """A folder that is a Zarr array or group (v2 or v3 metadata, or named *.zarr)."""
    return path.is_dir() and (path.suffix.lower() == ".zarr"
                              or any((path / m).is_file() for m in ("zarr.json", ".zarray", ".zgroup")))


def open_zarr(path: Path, dataset: str | None = None) -> Opened:
    """Open a Zarr array, an OME-Zarr image group, or the one array in a plain group."""
    node = zarr.open(str(path), mode="r")
    if dataset:
        try:
            node = node[dataset.strip("/")]
        except (KeyError, TypeError):
            raise ZarrProblem(f"no dataset {dataset!r} in the store; it holds {_members(node)}") from None
    return _open_node(node, str(path))


def _open_node(node: Any, where: str) -> Opened:
    if isinstance(node, zarr.Array):
        data = to_zyx(node, None, where)
        return Opened(data, attrs_voxel([node.attrs.asdict()], node.shape, data.shape[0]))
    ms = multiscales(node.attrs.asdict())
    if ms:
        return _open_ome(node, ms[0], where)
    arrays = list(node.array_keys())
    if len(arrays) != 1:
        raise ZarrProblem(f"the group holds {_members(node)}: pass dataset= to pick one array")
    arr = node[arrays[0]]
    data = to_zyx(arr, None, where)
    return Opened(data, attrs_voxel([arr.attrs.asdict(), node.attrs.asdict()], arr.shape, data.shape[0]))


def _members(node: Any) -> str:
    if isinstance(node, zarr.Array):
        return f"one array of shape {node.shape}"
    names = [f"{k} (array {tuple(node[k].shape)})" for k in sorted(node.array_keys())]
    names += [f"{k}/ (group)" for k in sorted(node.group_keys())]
    return ", ".join(names) if names else "nothing"


def multiscales(attrs: dict) -> list | None:
    """The NGFF 'multiscales' list (0.4: top-level attribute; 0.5: under 'ome')."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and ome.get("multiscales"):
        return ome["multiscales"]
    return attrs.get("multiscales") or None


def _open_ome(group: Any, ms: dict, where: str) -> Opened:
    datasets = ms.get("datasets") or []
    if not datasets or "path" not in datasets[0]:
        raise ZarrProblem("OME-Zarr multiscales metadata lists no datasets")
    arr = group[datasets[0]["path"]]
    axes = ms.get("axes") or ["t", "c", "z", "y", "x"][-arr.ndim:]
    letters = "".join(_letter(a) for a in axes)
    data = to_zyx(arr, letters, f"{where}/{datasets[0]['path']}")
    scale = _scale(datasets[0], ms, arr.ndim)
    return Opened(data, ome_voxel(axes, scale, data.shape[0]))


def _letter(axis: Any) -> str:
    if isinstance(axis, str):
        return _AXIS_LETTERS.get(axis.lower(), "Q")
    name, kind = str(axis.get("name", "")).lower(), str(axis.get("type", "")).lower()
    return _AXIS_LETTERS.get(name) or _TYPE_LETTERS.get(kind, "Q")


def _scale(dataset: dict, ms: dict, ndim: int) -> list[float]:
    """Dataset scale times the optional multiscale-level scale (NGFF coordinateTransformations)."""
    scale = [1.0] * ndim
    for transforms in (dataset.get("coordinateTransformations"), ms.get("coordinateTransformations")):
        for t in transforms or []:
            if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
                scale = [a * float(b) for a, b in zip(scale, t["scale"])]
    return scale


def ome_voxel(axes: list, scale: list[float], depth: int) -> VoxelSize | None:
    """(z, y, x) in nm from the z/y/x axes' scale and unit; None when a unit is missing or unknown."""
    sizes: dict[str, float | None] = {}
    for axis, s in zip(axes, scale):
        if isinstance(axis, dict) and _letter(axis) in "ZYX":
            factor = nm_per_unit(axis.get("unit"))
            sizes[_letter(axis)] = s * factor if factor is not None else None
    return complete_voxel(sizes.get("Z"), sizes.get("Y"), sizes.get("X"), depth)
