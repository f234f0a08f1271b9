"""open_volume / open_labels: every format reads back its data and voxel size, lazily."""
from __future__ import annotations

import time
import warnings

import h5py
import mrcfile
import numpy as np
import psutil
import pytest
import tifffile
import zarr
from PIL import Image

from ml.io import open_labels, open_volume
from ml.io.readers_slices import natural_key
from ml.volume import Volume

VS = (45.0, 4.6, 5.2)  # z, y, x in nm


@pytest.fixture(scope="module")
def vol():
    return np.random.default_rng(3).integers(0, 65535, (4, 30, 40)).astype(np.uint16)


def _same(v: Volume, arr: np.ndarray, voxel=VS) -> None:
    assert isinstance(v, Volume) and v.shape == arr.shape and v.dtype == arr.dtype
    np.testing.assert_array_equal(v[:], arr)
    z = min(2, arr.shape[0] - 1)
    np.testing.assert_array_equal(v[z, 5:9, ::3], arr[z, 5:9, ::3])
    if voxel is None:
        assert v.voxel_size is None
    else:
        np.testing.assert_allclose(v.voxel_size, voxel, rtol=1e-5)


# --- TIFF ---------------------------------------------------------------------------------------------
def test_imagej_tiff_is_memmapped_with_calibration(tmp_path, vol):
    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, vol, imagej=True, resolution=(1000 / VS[2], 1000 / VS[1]),
                     metadata={"spacing": VS[0] / 1000, "unit": "um", "axes": "ZYX"})
    v = open_volume(p)
    _same(v, vol)
    assert isinstance(v._data, np.memmap)


def test_ome_tiff_physical_size_and_singleton_axes_squeezed(tmp_path, vol):
    p = tmp_path / "x.ome.tif"
    tifffile.imwrite(p, vol[None, None], ome=True, compression="zlib", metadata={
        "axes": "TCZYX", "PhysicalSizeX": VS[2] / 1000, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": VS[1],
        "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": VS[0] / 1000, "PhysicalSizeZUnit": "µm"})
    v = open_volume(p)
    _same(v, vol)
    assert not isinstance(v._data, np.ndarray)  # compressed: lazy chunk reads, not a memmap


def test_compressed_tiff_is_not_decoded_at_open(tmp_path, vol):
    p = tmp_path / "c.tif"
    tifffile.imwrite(p, vol, compression="zlib", photometric="minisblack")
    with tifffile.TiffFile(p) as tf:
        off, n = tf.pages[3].dataoffsets[0], tf.pages[3].databytecounts[0]
    raw = bytearray(p.read_bytes())
    raw[off:off + n] = b"\xff" * n  # destroy the last page's compressed data only
    p.write_bytes(bytes(raw))
    v = open_volume(p)  # opening decodes nothing
    np.testing.assert_array_equal(v[0], vol[0])
    with pytest.raises(Exception):
        v[3]
    v.close()


def test_plain_tiff_resolution_tags_give_xy_for_a_single_image(tmp_path, vol):
    p = tmp_path / "one.tif"
    tifffile.imwrite(p, vol[0], resolution=(1e7 / VS[2], 1e7 / VS[1]), resolutionunit="CENTIMETER")
    v = open_volume(p)
    _same(v, vol[:1], voxel=(VS[1], VS[1], VS[2]))  # depth 1: z borrows y
    p2 = tmp_path / "stack.tif"
    tifffile.imwrite(p2, vol, photometric="minisblack", resolution=(1e7 / VS[2], 1e7 / VS[1]),
                     resolutionunit="CENTIMETER")
    assert open_volume(p2).voxel_size is None  # stack without z spacing: unknown


def test_equal_rgb_tiff_reads_as_grey(tmp_path, vol):
    p = tmp_path / "rgb.tif"
    grey = (vol[:2] >> 8).astype(np.uint8)
    tifffile.imwrite(p, np.repeat(grey[..., None], 3, axis=-1), photometric="rgb")
    _same(open_volume(p), grey, voxel=None)


def test_imagej_stack_saved_as_channels_is_read_as_z(tmp_path, vol):
    p = tmp_path / "c.tif"
    tifffile.imwrite(p, vol, imagej=True)  # no axes given: tifffile labels the stack 'C'
    with tifffile.TiffFile(p) as tf:
        assert tf.series[0].axes == "CYX"
    _same(open_volume(p), vol, voxel=None)


def test_argument_overrides_file_voxel_size(tmp_path, vol):
    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, vol, imagej=True, resolution=(100, 100), metadata={"spacing": 1, "unit": "um"})
    assert open_volume(p).voxel_size == pytest.approx((1000.0, 10.0, 10.0))
    assert open_volume(p, voxel_size=[30, 3, 3]).voxel_size == (30.0, 3.0, 3.0)


# --- folders of slices --------------------------------------------------------------------------------
def test_natural_key_orders_numbers_by_value():
    names = ["s10.tif", "s2.tif", "S1.tif", "s2b.tif", "s02a.tif"]
    assert sorted(names, key=natural_key) == ["S1.tif", "s2.tif", "s02a.tif", "s2b.tif", "s10.tif"]


def test_tiff_folder_natural_order_lazy_reads(tmp_path):
    for z in (10, 2, 1):
        tifffile.imwrite(tmp_path / f"{z}.tif", np.full((6, 7), z, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    v = open_volume(tmp_path)
    assert v.shape == (3, 6, 7) and v.voxel_size is None and v.name == tmp_path.name
    assert [int(v[z].max()) for z in range(3)] == [1, 2, 10]
    assert v[-1, 0, 0] == 10 and v[0:3:2, 1:3].shape == (2, 2, 7)
    (tmp_path / "2.tif").write_bytes(b"")  # break one slice after opening:
    assert v[2, 0, 0] == 10  # other slices still read: one file per access
    with pytest.raises(ValueError, match="slice 1"):
        v[1]


def test_png_folder_one_bit_and_grey_slices_agree(tmp_path):
    mask = np.zeros((8, 9), np.uint8)
    mask[2:5, 3:7] = 255
    Image.fromarray(mask).save(tmp_path / "0.png")
    Image.fromarray(mask > 0).convert("1").save(tmp_path / "1.png")  # 1-bit PNG
    v = open_volume(tmp_path)
    assert v.shape == (2, 8, 9) and v.dtype == np.uint8
    np.testing.assert_array_equal(v[1], mask)  # 1-bit reads as 0/255, like the grey slice


def test_single_png_and_equal_rgb_png_are_depth_one(tmp_path):
    img = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(np.stack([img] * 3, -1)).save(tmp_path / "rgb.png")
    v = open_volume(tmp_path / "rgb.png")
    assert v.shape == (1, 12, 10)
    np.testing.assert_array_equal(v[0], img)
    deep = img.astype(np.uint16) * 500
    Image.fromarray(deep).save(tmp_path / "16bit.png")
    _same(open_volume(tmp_path / "16bit.png"), deep[None], voxel=None)


# --- Zarr / OME-Zarr ----------------------------------------------------------------------------------
def test_plain_zarr_v3_array_with_voxel_attr(tmp_path, vol):
    z = zarr.create_array(tmp_path / "a.zarr", shape=vol.shape, chunks=(1, 16, 16), dtype=vol.dtype)
    z[:] = vol
    z.attrs["voxel_size"] = list(VS)
    _same(open_volume(tmp_path / "a.zarr"), vol)


def test_zarr_v2_group_with_one_array_and_dataset_argument(tmp_path, vol):
    g = zarr.open_group(tmp_path / "g.zarr", mode="w", zarr_format=2)
    g.create_array("raw", shape=vol.shape, dtype=vol.dtype, chunks=(2, 30, 40))[:] = vol
    _same(open_volume(tmp_path / "g.zarr"), vol, voxel=None)
    v = open_volume(tmp_path / "g.zarr", dataset="raw", voxel_size=VS)
    _same(v, vol)
    assert v.name == "g.zarr/raw"


def test_ome_zarr_05_first_level_scale_units_and_channel(tmp_path, vol):
    g = zarr.open_group(tmp_path / "o.zarr", mode="w", zarr_format=3)
    g.create_array("s0", shape=(1, 1) + vol.shape, dtype=vol.dtype, chunks=(1, 1, 2, 16, 16))[:] = vol[None, None]
    g.create_array("s1", shape=(1, 1, 4, 15, 20), dtype=vol.dtype)
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    um = [v / 1000 for v in VS]

    def level(path, scale):
        return {"path": path, "coordinateTransformations": [{"type": "scale", "scale": [1, 1] + scale}]}

    g.attrs["ome"] = {"version": "0.5", "multiscales": [{  # level scale x global scale (2) = voxel size
        "axes": axes, "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 2, 2, 2]}],
        "datasets": [level("s0", [u / 2 for u in um]), level("s1", um)]}]}
    _same(open_volume(tmp_path / "o.zarr"), vol)


def test_lazy_zarr_2000x4096x4096_opens_fast_without_reading(tmp_path):
    path = tmp_path / "huge.zarr"
    zarr.create_array(path, shape=(2000, 4096, 4096), chunks=(1, 512, 512), dtype="uint8")
    proc = psutil.Process()
    rss0, t0 = proc.memory_info().rss, time.perf_counter()
    v = open_volume(path)
    elapsed = time.perf_counter() - t0
    assert v.shape == (2000, 4096, 4096) and v.nbytes > 30e9
    assert elapsed < 1.0, elapsed
    assert int(v[1234, 100:200, 300:400].max()) == 0  # unwritten chunks read as fill value
    assert proc.memory_info().rss - rss0 < 100e6


@pytest.mark.parametrize("fmt", ["tiff", "mrc", "hdf5"])
def test_20gb_sparse_files_open_without_reading(tmp_path, fmt):
    shape = (1250, 4096, 4096)  # 21 GB of uint8, sparse on disk
    if fmt == "tiff":
        path = tmp_path / "big.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = tifffile.memmap(path, shape=shape, dtype=np.uint8, imagej=True)
            m[700, 5, 6] = 9
            m.flush()
            del m
    elif fmt == "mrc":
        path = tmp_path / "big.mrc"
        with mrcfile.new_mmap(path, shape=shape, mrc_mode=0) as m:
            m.data[700, 5, 6] = 9
    else:
        path = tmp_path / "big.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("em/raw", shape=shape, dtype=np.uint8, chunks=(1, 512, 512))[700, 5, 6] = 9
    proc = psutil.Process()
    rss0, t0 = proc.memory_info().rss, time.perf_counter()
    with open_volume(path) as v:
        assert time.perf_counter() - t0 < 1.0
        assert v.shape == shape and v[700, 5, 6] == 9 and int(v[700].sum()) == 9
        assert proc.memory_info().rss - rss0 < 100e6


# --- HDF5 / MRC ---------------------------------------------------------------------------------------
def test_hdf5_only_3d_dataset_element_size_um(tmp_path, vol):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f["meta/info"] = np.arange(5)
        ds = f.create_dataset("volumes/raw", data=vol[..., None], chunks=(1, 16, 16, 1))  # ilastik-style ZYXC=1
        ds.attrs["element_size_um"] = [v / 1000 for v in VS] + [1.0]
    v = open_volume(p)
    _same(v, vol)
    assert not isinstance(v._data, np.ndarray)
    v.close()


def test_hdf5_named_dataset_and_voxel_size_attr(tmp_path, vol):
    p = tmp_path / "x.hdf5"
    with h5py.File(p, "w") as f:
        f["a"] = vol
        f["b"] = vol[:, :20]
        f["b"].attrs["voxel_size"] = list(VS)
    _same(open_volume(p, dataset="/b"), vol[:, :20])


def test_mrc_is_memmapped_with_angstrom_converted(tmp_path, vol):
    p = tmp_path / "x.mrc"
    with mrcfile.new(p) as m:
        m.set_data(vol)
        m.voxel_size = (VS[2] * 10, VS[1] * 10, VS[0] * 10)  # x, y, z in Angstrom
    v = open_volume(p)
    _same(v, vol)
    v.close()


def test_big_endian_memmap_reads_native(tmp_path, vol):
    p = tmp_path / "be.tif"
    tifffile.imwrite(p, vol, byteorder=">", photometric="minisblack")
    v = open_volume(p)
    assert v.dtype.isnative and v[1].dtype.isnative
    np.testing.assert_array_equal(v[:], vol)


# --- labels -------------------------------------------------------------------------------------------
def test_open_labels_binarize_threshold_and_bool(tmp_path):
    lab = np.array([[[0, 3, 200], [255, 0, 0]]], np.uint8)
    tifffile.imwrite(tmp_path / "l.tif", lab, photometric="minisblack")
    np.testing.assert_array_equal(open_labels(tmp_path / "l.tif")[:], lab)
    np.testing.assert_array_equal(open_labels(tmp_path / "l.tif", binarize=True)[:], lab > 0)
    got = open_labels(tmp_path / "l.tif", binarize=True, threshold=127)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got[0, 0], [0, 0, 1])
    zarr.create_array(tmp_path / "b.zarr", shape=(1, 2, 3), dtype=bool)[:] = lab > 100
    b = open_labels(tmp_path / "b.zarr")
    assert b.dtype == np.uint8 and b[:].tolist() == (lab > 100).astype(np.uint8).tolist()


# --- real data ----------------------------------------------------------------------------------------
def test_vnc_raw_folder_and_mitochondria_masks(vnc_dir):
    raw = open_volume(vnc_dir / "stack1" / "raw")
    assert raw.shape == (20, 1024, 1024) and raw.dtype == np.uint8 and raw.name == "raw"
    assert 0 < float(raw[10].mean()) < 255
    masks = open_labels(vnc_dir / "stack1" / "mitochondria")
    assert masks.shape == raw.shape and masks.dtype == np.uint8
    assert set(np.unique(masks[1]).tolist()) == {0, 255}  # 01.png is 1-bit: read as 0/255 too
    fg = open_labels(vnc_dir / "stack1" / "mitochondria", binarize=True, threshold=127)
    per_slice = [float(fg[z].mean()) for z in range(20)]
    assert 0.035 < min(per_slice) and max(per_slice) < 0.08  # README: 4.0 - 7.4 % per section
    assert float(np.mean(per_slice)) == pytest.approx(0.054, abs=0.002)
