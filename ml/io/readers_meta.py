"""What format readers return, and voxel sizes from file metadata (units to nm, (z, y, x) order).

Every format stores calibration differently (OME units, ImageJ 'unit', MRC Angstrom,
HDF5 'element_size_um'); these helpers bring them all to nanometres in (z, y, x) order.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

from ml.volume import VoxelSize


class Opened(NamedTuple):
    """A format reader's result: a (Z, Y, X) array-like, its voxel size, and how to close the file."""

    data: Any
    voxel_size: VoxelSize | None
    closer: Any = None

_NM_PER_UNIT = {
    "nm": 1.0, "nanometer": 1.0, "nanometre": 1.0,
    "um": 1e3, "µm": 1e3, "μm": 1e3, "\\u00b5m": 1e3, "micron": 1e3, "microns": 1e3,
    "micrometer": 1e3, "micrometre": 1e3,
    "mm": 1e6, "millimeter": 1e6, "millimetre": 1e6,
    "cm": 1e7, "centimeter": 1e7, "centimetre": 1e7,
    "m": 1e9, "meter": 1e9, "metre": 1e9,
    "a": 0.1, "å": 0.1, "Å": 0.1, "angstrom": 0.1, "ångström": 0.1,
    "pm": 1e-3, "picometer": 1e-3, "picometre": 1e-3,
    "inch": 2.54e7, "in": 2.54e7,
}


def nm_per_unit(unit: Any) -> float | None:
    """Nanometres in one ``unit`` (a name like 'µm', 'micrometer', 'nm'); None when unknown."""
    if unit is None:
        return None
    text = str(unit).strip()
    return _NM_PER_UNIT.get(text, _NM_PER_UNIT.get(text.lower()))


def _positive(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def complete_voxel(z: Any, y: Any, x: Any, depth: int) -> VoxelSize | None:
    """(z, y, x) when all three are known; a single section (depth 1) borrows y for its unused z."""
    y, x, z = _positive(y), _positive(x), _positive(z)
    if y is None or x is None:
        return None
    if z is None:
        if depth != 1:
            return None
        z = y
    return (z, y, x)


def voxel_from_attrs(attrs: Mapping[str, Any], depth: int,
                     spatial: tuple[int | None, int, int] | None = None, ndim: int = 3) -> VoxelSize | None:
    """Voxel size from HDF5/Zarr attributes: 'element_size_um' (µm) or 'voxel_size' (nm), z, y, x order.

    A vector with one entry per array axis (``ndim``, e.g. ZYXC) is read at the ``spatial``
    (z, y, x) positions; 'voxel_size' is in nm unless 'voxel_size_unit' or 'unit' says otherwise.
    """
    for key, default_unit in (("element_size_um", "um"), ("voxel_size", "nm")):
        if key not in attrs:
            continue
        unit = attrs.get(f"{key}_unit", attrs.get("unit", default_unit)) if key == "voxel_size" else default_unit
        scale = nm_per_unit(unit)
        try:
            values = [float(v) * scale for v in _as_sequence(attrs[key])] if scale else []
        except (TypeError, ValueError):
            continue
        if spatial is not None and len(values) == ndim and ndim != 3:
            z, y, x = spatial
            return complete_voxel(values[z] if z is not None else None, values[y], values[x], depth)
        if len(values) == 3:
            return complete_voxel(*values, depth=depth)
        if len(values) == 2:
            return complete_voxel(None, values[0], values[1], depth)
    return None


def _as_sequence(value: Any) -> Sequence[Any]:
    if isinstance(value, (str, bytes)):
        raise TypeError("not a vector")
    try:
        return list(value)
    except TypeError:
        return [value]
