"""Per-object statistics and meshes from an instance label volume.

Everything works on each object's bounding-box crop (``ndi.find_objects`` finds all boxes
in one pass), so cost grows with the volume plus the objects' sizes, not volume x objects.
Surfaces come from marching cubes (``skimage.measure.marching_cubes`` with physical
spacing) on a shape-based interpolation of the crop: per-section signed distances,
lightly smoothed in-plane and interpolated along z. On raw binary masks the voxel
staircase inflates the area by 7-30% (worst for thick sections); this stays within ~5%
for spheres and ellipsoids at 1x-8x anisotropy.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ml.volume import voxel_size_or_unit

COLUMNS = ["id", "voxels", "volume_nm3", "surface_nm2", "centroid_z", "centroid_y", "centroid_x",
           "bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1", "edge"]

#: Gaussian sigma (pixels, in-plane) applied to each section's signed distance before meshing.
SMOOTH_SIGMA = 0.6
#: Cap on the z-upsampled field per object (float32 voxels), bounding memory for huge objects.
MAX_UPSAMPLED_VOXELS = 16_000_000


def _instances(data: Any) -> np.ndarray:
    arr = data if isinstance(data, np.ndarray) else np.stack([np.asarray(data[z]) for z in range(data.shape[0])])
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"instances must be an integer (Z, Y, X) or (Y, X) label array, got {arr.dtype} {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError("instances must be >= 0 (0 = background, 1..n = objects)")
    return arr


def _section_sdf(mask: np.ndarray, spacing_yx: tuple[float, float]) -> np.ndarray:
    """Signed in-plane distance (nm, positive inside) per z section, with empty cap sections
    above and below that close the object half a section beyond its end sections."""
    edt = ndi.distance_transform_edt
    sdf = np.stack([edt(m, sampling=spacing_yx) - edt(~m, sampling=spacing_yx) for m in mask])
    return np.concatenate([-np.abs(sdf[:1]), sdf, -np.abs(sdf[-1:])]).astype(np.float32)


def _interpolate_z(sdf: np.ndarray, factor: int) -> np.ndarray:
    """Linear interpolation between sections: ``factor`` samples per section gap."""
    if factor <= 1:
        return sdf
    t = (np.arange(factor, dtype=np.float32) / factor)[None, :, None, None]
    between = sdf[:-1, None] * (1 - t) + sdf[1:, None] * t
    return np.concatenate([between.reshape(-1, *sdf.shape[1:]), sdf[-1:]])


def _mesh(mask: np.ndarray, spacing: tuple[float, float, float], step: int = 1,
          smooth: float = SMOOTH_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Surface of a boolean crop: (verts in nm relative to the crop origin, faces).

    Shape-based interpolation: each section's signed distance map is interpolated along z
    (up to ~isotropic sampling) and meshed at level 0, so thick sections give sloped walls
    instead of terraces (terraces inflate the area ~15-30% at 8x anisotropy).
    """
    from skimage.measure import marching_cubes

    vz, vy, vx = spacing
    mask = np.pad(mask, ((0, 0), (2, 2), (2, 2)))
    factor = max(1, int(round(vz / min(vy, vx))))
    factor = max(1, min(factor, MAX_UPSAMPLED_VOXELS // max(1, mask.size)))
    sdf = _section_sdf(mask, (vy, vx))
    if smooth > 0:
        smoothed = ndi.gaussian_filter(sdf, (0, smooth, smooth))
        sdf = smoothed if smoothed.max() > 0 else sdf  # smoothing can erase a 1-2 pixel object
    field = _interpolate_z(sdf, factor)
    for s in range(max(1, int(step)), 0, -1):  # coarse steps can miss a tiny object entirely
        try:
            verts, faces, _, _ = marching_cubes(field, 0.0, spacing=(vz / factor, vy, vx), step_size=s)
        except (ValueError, RuntimeError):
            continue
        if len(faces):
            return verts - np.array([vz, 2 * vy, 2 * vx], dtype=verts.dtype), faces
    return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)


def _surface(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    from skimage.measure import mesh_surface_area

    verts, faces = _mesh(mask, spacing)
    return float(mesh_surface_area(verts, faces)) if len(faces) else 0.0


def object_table(instances: Any, voxel_size: Sequence[float] | None) -> pd.DataFrame:
    """One row per object id > 0 with the columns in :data:`COLUMNS`.

    Volumes in nm^3 and surfaces in nm^2 (voxel units when ``voxel_size`` is None);
    centroids in voxel coordinates; bboxes half-open voxel ranges. ``edge``: the object touches a
    face of the volume, so the volume cut it: its volume is a part, and its surface includes the
    cut face (the padding closes it). A count or a mean size of whole objects leaves these out,
    as Fiji's 3D Objects Counter does with "exclude objects on edges".
    """
    inst = _instances(instances)
    vs = voxel_size_or_unit(voxel_size)
    voxel_nm3 = float(np.prod(vs))
    rows = []
    for idx, box in enumerate(ndi.find_objects(inst)):
        if box is None:
            continue
        oid = idx + 1
        crop = inst[box]
        inside = crop == oid
        coords = np.nonzero(inside)
        n = int(coords[0].size)
        centroid = [float(c.mean()) + s.start for c, s in zip(coords, box)]
        edge = any(s.start == 0 or s.stop == dim for s, dim in zip(box, inst.shape))
        rows.append([oid, n, n * voxel_nm3, _surface(inside, vs), *centroid,
                     *(s.start for s in box), *(s.stop for s in box), edge])
    table = pd.DataFrame(rows, columns=COLUMNS)
    ints = ["id", "voxels"] + [c for c in COLUMNS if c.startswith("bbox_")]
    floats = [c for c in COLUMNS if c not in ints and c != "edge"]
    return table.astype({c: "int64" for c in ints} | {c: "float64" for c in floats} | {"edge": bool})


def summary(table: pd.DataFrame) -> dict:
    """count, total/mean volume (nm^3) and total surface (nm^2) of an :func:`object_table`; ``edge_count``
    of those objects the volume's edge cuts."""
    count = int(len(table))
    total = float(table["volume_nm3"].sum()) if count else 0.0
    return {
        "count": count,
        "edge_count": int(table["edge"].sum()) if count else 0,
        "total_volume_nm3": total,
        "mean_volume_nm3": total / count if count else 0.0,
        "total_surface_nm2": float(table["surface_nm2"].sum()) if count else 0.0,
    }


def _box_of(inst: np.ndarray, oid: int) -> tuple[slice, ...]:
    boxes = ndi.find_objects((inst == oid).astype(np.uint8))
    if not boxes or boxes[0] is None:
        raise KeyError(f"object id {oid} is not in the instance volume")
    return boxes[0]


def _mesh_in_volume(inst: np.ndarray, oid: int, box: tuple[slice, ...], vs: tuple[float, float, float],
                    step: int) -> tuple[np.ndarray, np.ndarray]:
    verts, faces = _mesh(inst[box] == oid, vs, step)
    offset = np.array([s.start * v for s, v in zip(box, vs)], dtype=np.float32)
    return (verts + offset).astype(np.float32), faces.astype(np.int64)


def object_mesh(instances: Any, object_id: int, voxel_size: Sequence[float] | None,
                step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(verts (V, 3) in nm as (z, y, x), faces (F, 3))`` of one object, for plotly Mesh3d.

    ``step`` > 1 decimates (marching-cubes step size) for faster display of big objects.
    """
    inst = _instances(instances)
    return _mesh_in_volume(inst, int(object_id), _box_of(inst, int(object_id)), voxel_size_or_unit(voxel_size), step)


def objects_mesh(instances: Any, voxel_size: Sequence[float] | None, max_objects: int = 200,
                 step: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One mesh for the ``max_objects`` largest objects: ``(verts, faces, object_id per vertex)``."""
    inst = _instances(instances)
    vs = voxel_size_or_unit(voxel_size)
    boxes = ndi.find_objects(inst)
    sizes = np.bincount(inst.ravel())
    ids = [i + 1 for i, b in enumerate(boxes) if b is not None]
    ids = sorted(ids, key=lambda i: (-sizes[i], i))[: max(0, int(max_objects))]
    all_v, all_f, all_id = [], [], []
    offset = 0
    for oid in ids:
        v, f = _mesh_in_volume(inst, oid, boxes[oid - 1], vs, step)
        all_v.append(v)
        all_f.append(f + offset)
        all_id.append(np.full(len(v), oid, dtype=np.int64))
        offset += len(v)
    if not all_v:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    return np.concatenate(all_v), np.concatenate(all_f), np.concatenate(all_id)
