"""Exporters: each format round-trips data + voxel size, streams by z, and writes atomically."""
from __future__ import annotations

import csv
import json

import nrrd
import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from ml.active.pool import Patch
from ml.io import export
from ml.io.export import write_nrrd, write_ome_zarr, write_patch_pairs, write_table_csv, write_tiff
from ml.io.readers import open_volume
from ml.progress import Cancelled
from ml.volume import Volume

VS = (45.0, 4.6, 5.2)


class SlabLog:
    """A real (Z, Y, X) source sliceable by z that records the size of every block read."""

    def __init__(self, arr: np.ndarray):
        self.arr, self.shape, self.dtype, self.blocks = arr, arr.shape, arr.dtype, []

    def __getitem__(self, key):
        out = self.arr[key]
        self.blocks.append(out.shape[0] if out.ndim == 3 else 1)
        return out


@pytest.fixture(scope="module")
def vol(synthetic_volume):
    return synthetic_volume[0]  # (6, 128, 128) uint8


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# --- TIFF -----------------------------------------------------------------------------------------------
def test_tiff_round_trip_imagej_calibration(tmp_path, vol):
    p = write_tiff(tmp_path / "v.tif", Volume(vol), VS)
    with tifffile.TiffFile(p) as tf:
        assert tf.is_imagej and tf.series[0].axes == "ZYX"
        meta = tf.imagej_metadata
        assert meta["unit"] in ("um", "micron", "\\u00B5m") and meta["spacing"] == pytest.approx(0.045)
        num, den = tf.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(1000 / VS[2], rel=1e-6)  # pixels per µm
    back = open_volume(p)
    np.testing.assert_array_equal(back[:], vol)
    np.testing.assert_allclose(back.voxel_size, VS, rtol=1e-6)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("dtype, written", [(np.bool_, np.uint8), (np.int8, np.int16), (np.uint16, np.uint16),
                                            (np.uint32, np.float32), (np.float64, np.float32)])
def test_tiff_widens_types_imagej_lacks(tmp_path, dtype, written):
    arr = (np.arange(2 * 5 * 6).reshape(2, 5, 6) % 2 if dtype == np.bool_ else
           np.arange(2 * 5 * 6).reshape(2, 5, 6)).astype(dtype)
    back = open_volume(write_tiff(tmp_path / "t.tif", arr))
    assert back.dtype == written and back.voxel_size is None
    np.testing.assert_array_equal(back[:], arr.astype(written))


def test_tiff_refuses_ids_float32_cannot_hold_and_leaves_nothing(tmp_path):
    arr = np.full((2, 4, 4), 2 ** 25, np.uint32)
    with pytest.raises(ValueError, match="cannot be written exactly"):
        write_tiff(tmp_path / "ids.tif", arr)
    assert list(tmp_path.iterdir()) == []


def test_tiff_streams_by_slab(tmp_path, monkeypatch, vol):
    monkeypatch.setattr(export, "SLAB_BYTES", 2 * 128 * 128)  # two slices per read
    src = SlabLog(vol)
    write_tiff(tmp_path / "s.tif", src, VS)
    assert max(src.blocks) == 2 and sum(src.blocks) == vol.shape[0]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "s.tif"), vol)


def test_cancel_keeps_previous_file_and_removes_tmp(tmp_path, monkeypatch, vol):
    monkeypatch.setattr(export, "SLAB_BYTES", 128 * 128)
    p = write_tiff(tmp_path / "c.tif", vol[:2])
    seen = []
    with pytest.raises(Cancelled):
        write_tiff(p, vol, progress=lambda d, t, i: seen.append(d), cancel=lambda: len(seen) >= 3)
    assert seen == [1, 2, 3] and tifffile.imread(p).shape == (2, 128, 128)  # old export untouched
    assert _leftovers(tmp_path) == []


# --- OME-Zarr -------------------------------------------------------------------------------------------
def test_ome_zarr_ngff_04_metadata_and_pyramid(tmp_path):
    arr = np.random.default_rng(0).integers(0, 5, (3, 1030, 700)).astype(np.uint16)
    p = write_ome_zarr(tmp_path / "v.ome.zarr", arr, VS, name="mito")
    attrs = json.loads((p / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4" and ms["name"] == "mito"
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["type"] == "space" and a["unit"] == "nanometer" for a in ms["axes"])
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [list(VS), [VS[0], VS[1] * 2, VS[2] * 2]]  # 1030 px -> two levels
    meta = json.loads((p / "0" / ".zarray").read_text())
    assert meta["zarr_format"] == 2 and meta["dimension_separator"] == "/" and meta["chunks"][1:] == [512, 512]
    g = zarr.open_group(p, mode="r")
    np.testing.assert_array_equal(g["0"][:], arr)
    np.testing.assert_array_equal(g["1"][:], arr[:, ::2, ::2])  # label values survive subsampling
    back = open_volume(p)
    assert back.shape == arr.shape and back.voxel_size == pytest.approx(VS)


def test_ome_zarr_streams_replaces_own_export_and_protects_other_folders(tmp_path, vol):
    src = SlabLog(vol)
    p = write_ome_zarr(tmp_path / "v.zarr", src, None, levels=1)
    assert max(src.blocks) <= 16 and sum(src.blocks) == vol.shape[0]
    ms = json.loads((p / ".zattrs").read_text())["multiscales"][0]
    assert "unit" not in ms["axes"][0] and ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1, 1, 1]
    write_ome_zarr(p, vol[:2], VS, levels=1)
    assert open_volume(p).shape == (2, 128, 128)
    other = tmp_path / "mydata"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_ome_zarr(other, vol, VS)
    assert (other / "notes.txt").read_text() == "keep me" and _leftovers(tmp_path) == []


def test_ome_zarr_cancel_leaves_no_folder(tmp_path, vol):
    with pytest.raises(Cancelled):
        write_ome_zarr(tmp_path / "c.zarr", vol, VS, cancel=lambda: True)
    assert list(tmp_path.iterdir()) == []


# --- NRRD -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float16, np.bool_])
def test_nrrd_round_trip_with_space_directions(tmp_path, dtype, vol):
    arr = (vol > 128) if dtype == np.bool_ else vol.astype(dtype)
    p = write_nrrd(tmp_path / "v.nrrd", Volume(arr), VS)
    data, header = nrrd.read(str(p), index_order="C")
    expect = {np.bool_: np.uint8, np.float16: np.float32}.get(dtype, dtype)
    assert data.dtype == expect and data.shape == vol.shape
    np.testing.assert_array_equal(data, arr.astype(expect))
    np.testing.assert_allclose(header["space directions"], np.diag([VS[2], VS[1], VS[0]]))  # x, y, z rows
    assert header["space"] == "left-posterior-superior" and list(header["space units"]) == ["nm"] * 3
    assert _leftovers(tmp_path) == []


def test_nrrd_streams_by_slab(tmp_path, monkeypatch, vol):
    monkeypatch.setattr(export, "SLAB_BYTES", 3 * 128 * 128)
    src = SlabLog(vol)
    write_nrrd(tmp_path / "v.nrrd", src, None)
    assert src.blocks == [3, 3]
    data, header = nrrd.read(str(tmp_path / "v.nrrd"), index_order="C")
    np.testing.assert_array_equal(data, vol)
    np.testing.assert_allclose(header["space directions"], np.eye(3))


def test_writers_accept_a_2d_image_and_reject_4d_or_bad_voxel_size(tmp_path, vol):
    assert open_volume(write_tiff(tmp_path / "a.tif", vol[0])).shape == (1, 128, 128)
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        write_nrrd(tmp_path / "b.nrrd", vol[None])
    with pytest.raises(ValueError, match="three positive numbers"):
        write_ome_zarr(tmp_path / "c.zarr", vol, (40, None, 5))
    assert not (tmp_path / "b.nrrd").exists() and not (tmp_path / "c.zarr").exists()


# --- patch pairs and tables -----------------------------------------------------------------------------
def test_patch_pairs_images_masks_and_index(tmp_path, synthetic_volume):
    raw, mito = synthetic_volume
    labels = (mito + 1).astype(np.uint8)  # 1 background, 2 mitochondria
    patches = [Patch(0, 0, 0, 32), Patch(3, 64, 32, 64)]
    out = write_patch_pairs(tmp_path / "pairs", Volume(raw, voxel_size=VS), labels, patches)
    assert sorted(p.name for p in out.iterdir()) == ["image_000.tif", "image_001.tif", "mask_000.tif",
                                                     "mask_001.tif", "patches.csv"]
    np.testing.assert_array_equal(tifffile.imread(out / "image_001.tif"), raw[3, 64:128, 32:96])
    np.testing.assert_array_equal(tifffile.imread(out / "mask_001.tif"), labels[3, 64:128, 32:96])
    assert open_volume(out / "image_000.tif").voxel_size == pytest.approx(VS)  # calibration kept
    rows = list(csv.DictReader(open(out / "patches.csv")))
    assert rows[1] == {"index": "1", "image": "image_001.tif", "mask": "mask_001.tif", "z": "3", "y": "64",
                       "x": "32", "size": "64"}
    with pytest.raises(ValueError, match="not inside the volume"):
        write_patch_pairs(tmp_path / "bad", raw, labels, [Patch(0, 100, 0, 64)])
    assert not (tmp_path / "bad").exists() and _leftovers(tmp_path) == []


def test_table_csv_from_frame_rows_and_columns(tmp_path):
    df = pd.DataFrame({"id": [1, 2], "volume_nm3": [10.5, 20.0]})
    pd.testing.assert_frame_equal(pd.read_csv(write_table_csv(tmp_path / "a.csv", df)), df)
    rows = [{"id": 1, "n": 3}, {"id": 2, "n": 4, "extra": "x"}]
    got = list(csv.DictReader(open(write_table_csv(tmp_path / "b.csv", rows))))
    assert got == [{"id": "1", "n": "3", "extra": ""}, {"id": "2", "n": "4", "extra": "x"}]
    write_table_csv(tmp_path / "c.csv", {"a": [1, 2], "b": ["x", "y"]})
    assert (tmp_path / "c.csv").read_text().splitlines() == ["a,b", "1,x", "2,y"]
    write_table_csv(tmp_path / "d.csv", [(1, 2)], columns=["p", "q"])
    assert (tmp_path / "d.csv").read_text().splitlines() == ["p,q", "1,2"]
    assert _leftovers(tmp_path) == []
