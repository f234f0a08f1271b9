"""Object statistics against analytic spheres, anisotropy, and meshes for the 3D view."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.objects import COLUMNS, object_mesh, object_table, objects_mesh, summary
from ml.postprocess import segment


def sphere(radius_nm: float, voxel_size, center_nm=None, margin: int = 3) -> np.ndarray:
    vs = np.asarray(voxel_size, float)
    shape = tuple(int(np.ceil(2 * radius_nm / v)) + 2 * margin for v in vs)
    center = np.asarray(shape) * vs / 2 if center_nm is None else np.asarray(center_nm)
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    d2 = sum(((g + 0.5) * v - c) ** 2 for g, v, c in zip(grids, vs, center))
    return (d2 <= radius_nm**2).astype(np.int32)


@pytest.mark.parametrize("voxel_size", [(4.0, 4.0, 4.0), (12.0, 4.0, 4.0), (10.0, 5.0, 3.0)])
def test_sphere_volume_and_surface_in_nm(voxel_size):
    r = 48.0  # nm
    inst = sphere(r, voxel_size)
    table = object_table(inst, voxel_size)
    assert list(table.columns) == COLUMNS and len(table) == 1
    row = table.iloc[0]
    assert row.volume_nm3 == pytest.approx(4 / 3 * np.pi * r**3, rel=0.05)
    assert row.surface_nm2 == pytest.approx(4 * np.pi * r**2, rel=0.10)
    assert row.voxels == np.count_nonzero(inst)
    center_vox = (np.asarray(inst.shape) - 1) / 2
    assert [row.centroid_z, row.centroid_y, row.centroid_x] == pytest.approx(center_vox, abs=0.5)


def test_anisotropic_voxel_size_scales_volume():
    inst = np.zeros((4, 10, 10), np.int32)
    inst[1:3, 2:5, 2:7] = 7  # 2 x 3 x 5 voxels
    row = object_table(inst, (40.0, 5.0, 5.0)).iloc[0]
    assert row.id == 7 and row.voxels == 30
    assert row.volume_nm3 == pytest.approx(30 * 40 * 5 * 5)
    assert (row.bbox_z0, row.bbox_y0, row.bbox_x0, row.bbox_z1, row.bbox_y1, row.bbox_x1) == (1, 2, 2, 3, 5, 7)
    # same voxels, isotropic 5 nm: volume 8x smaller, and a physically flatter object
    flat = object_table(inst, (5.0, 5.0, 5.0)).iloc[0]
    assert flat.volume_nm3 == pytest.approx(row.volume_nm3 / 8)
    assert flat.surface_nm2 < row.surface_nm2 / 2
    # scaling every axis by 3 scales areas by 9 exactly
    assert object_table(inst, (120.0, 15.0, 15.0)).iloc[0].surface_nm2 == pytest.approx(9 * row.surface_nm2)


def ellipsoid_area(a: float, b: float, c: float) -> float:
    """Knud Thomsen's approximation (max error ~1%)."""
    p = 1.6075
    return 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


def test_thick_sections_do_not_inflate_surface():
    """A mitochondrion-like ellipsoid on 40 x 5 x 5 nm voxels (8x anisotropic, 5 sections thick)."""
    vs = np.array([40.0, 5.0, 5.0])
    a, b, c = 100.0, 150.0, 300.0
    shape = [int(np.ceil(2 * r / v)) + 4 for r, v in zip((a, b, c), vs)]
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    inst = (sum((((g + 0.5) * v - n * v / 2) / r) ** 2 for g, v, n, r in zip(grids, vs, shape, (a, b, c))) <= 1)
    row = object_table(inst.astype(np.int32), vs).iloc[0]
    assert row.volume_nm3 == pytest.approx(4 / 3 * np.pi * a * b * c, rel=0.05)
    assert row.surface_nm2 == pytest.approx(ellipsoid_area(a, b, c), rel=0.10)


def test_table_from_segmentation_and_summary():
    a = sphere(6, (1, 1, 1), center_nm=(10, 10, 10), margin=6)
    b = sphere(6, (1, 1, 1), center_nm=(10, 10, 10), margin=6)
    vol = np.concatenate([a, np.zeros_like(a), b], axis=2).astype(np.float32)
    inst = segment(vol)
    table = object_table(inst, None)
    assert list(table.id) == [1, 2]
    assert table.voxels.tolist() == [int(a.sum())] * 2
    s = summary(table)
    assert s["count"] == 2
    assert s["total_volume_nm3"] == pytest.approx(2 * a.sum())
    assert s["mean_volume_nm3"] == pytest.approx(a.sum())
    assert s["total_surface_nm2"] == pytest.approx(table.surface_nm2.sum())
    empty = object_table(np.zeros((3, 4, 4), np.int32), (1, 1, 1))
    assert isinstance(empty, pd.DataFrame) and list(empty.columns) == COLUMNS and len(empty) == 0
    assert summary(empty) == {"count": 0, "edge_count": 0, "total_volume_nm3": 0.0, "mean_volume_nm3": 0.0,
                              "total_surface_nm2": 0.0}


def test_objects_the_volume_cuts_are_marked_on_every_face():
    inst = np.zeros((5, 12, 12), np.int32)
    inst[2, 5:7, 5:7] = 1                       # inside
    inst[0:2, 5:7, 5:7] = 2                     # the first slice
    inst[2, 10:12, 5:7] = 3                     # the last row
    inst[3, 5:7, 0:2] = 4                       # the first column
    inst[4, 1:3, 1:3] = 5                       # the last slice
    table = object_table(inst, (40, 5, 5))
    assert table.edge.dtype == bool and table.set_index("id").edge.to_dict() == {1: False, 2: True, 3: True,
                                                                                 4: True, 5: True}
    assert summary(table)["edge_count"] == 4


def test_single_voxel_and_slab_objects_get_a_surface():
    inst = np.zeros((3, 8, 8), np.int32)
    inst[1, 1, 1] = 1
    inst[1, 4:7, 4:7] = 2
    table = object_table(inst, (1, 1, 1))
    assert (table.surface_nm2 > 0).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match="integer"):
        object_table(np.zeros((2, 3, 3), np.float32), (1, 1, 1))
    with pytest.raises(ValueError, match="voxel_size"):
        object_table(np.zeros((2, 3, 3), np.int32), (1, 0, 1))


def test_object_mesh_is_placed_in_nm():
    vs = (10.0, 4.0, 4.0)
    inst = np.pad(sphere(40.0, vs, margin=1), ((2, 1), (10, 3), (4, 12)))
    verts, faces = object_mesh(inst, 1, vs)
    assert verts.shape[1] == 3 and faces.shape[1] == 3 and faces.max() < len(verts)
    centre = verts.mean(0)
    zz, yy, xx = np.nonzero(inst)
    expected = (np.array([zz.mean(), yy.mean(), xx.mean()]) + 0.0) * vs
    assert centre == pytest.approx(expected, abs=max(vs))
    coarse, cf = object_mesh(inst, 1, vs, step=2)
    assert 0 < len(coarse) < len(verts)
    with pytest.raises(KeyError):
        object_mesh(inst, 5, vs)


def test_objects_mesh_concatenates_largest_first():
    inst = np.zeros((10, 30, 60), np.int32)
    inst[2:8, 5:25, 5:25] = 1
    inst[3:6, 10:14, 35:39] = 2
    inst[4, 2, 50] = 3
    verts, faces, ids = objects_mesh(inst, (1, 1, 1), max_objects=2, step=1)
    assert set(np.unique(ids)) == {1, 2}
    assert len(ids) == len(verts) and faces.max() < len(verts)
    # faces never join two objects
    assert np.all(ids[faces[:, 0]] == ids[faces[:, 2]])
    v0, f0, i0 = objects_mesh(np.zeros((2, 3, 3), np.int32), (1, 1, 1))
    assert len(v0) == len(f0) == len(i0) == 0
