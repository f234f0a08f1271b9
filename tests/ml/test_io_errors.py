"""Every way a volume path can be wrong gives a VolumeFormatError saying what and what is accepted."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from ml.io import SUPPORTED_FORMATS, VolumeFormatError, VolumeNotFoundError, open_labels, open_volume


def _fails(path, match: str, **kw) -> VolumeFormatError:
    with pytest.raises(VolumeFormatError, match=match) as info:
        open_volume(path, **kw)
    msg = str(info.value)
    assert str(path) in msg and SUPPORTED_FORMATS in msg  # names the path, lists what is accepted
    return info.value


def _tif(path, arr, **kw):
    tifffile.imwrite(path, arr, photometric="minisblack", **kw)
    return path


def test_nonexistent_path_is_also_file_not_found(tmp_path):
    err = _fails(tmp_path / "nope.tif", "no such file or folder")
    assert isinstance(err, VolumeNotFoundError) and isinstance(err, FileNotFoundError)


def test_empty_file(tmp_path):
    (tmp_path / "e.tif").write_bytes(b"")
    _fails(tmp_path / "e.tif", r"empty \(0 bytes\)")


def test_corrupt_tiff(tmp_path):
    (tmp_path / "c.tif").write_bytes(b"this is not a tiff at all" * 10)
    _fails(tmp_path / "c.tif", "not a readable TIFF file")


def test_truncated_tiff(tmp_path):
    p = _tif(tmp_path / "t.tif", np.ones((4, 64, 64), np.uint8))
    p.write_bytes(p.read_bytes()[: 3 * 64 * 64])
    _fails(p, "truncated")


@pytest.mark.parametrize("name", ["vol.xyz", "vol"])
def test_unsupported_extension(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00" * 100)
    _fails(tmp_path / name, "is not supported")


def test_zip_gets_a_hint(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "v.zip", "w") as zf:
        zf.writestr("a.txt", "x")
    _fails(tmp_path / "v.zip", "unzip it first")


def test_empty_folder_and_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    _fails(tmp_path / "empty", "folder is empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    _fails(tmp_path / "docs", r"no TIFF/PNG slices .*readme\.txt")


def test_mixed_slice_shapes_and_types(tmp_path):
    _tif(tmp_path / "0.tif", np.zeros((8, 8), np.uint8))
    _tif(tmp_path / "1.tif", np.zeros((8, 9), np.uint8))
    _fails(tmp_path, r"slices differ: 0\.tif is 8x8 uint8, 1\.tif is 9x8 uint8")
    _tif(tmp_path / "1.tif", np.zeros((8, 8), np.uint16))
    _fails(tmp_path, "slices differ.*uint16")


def test_mixed_tiff_and_png_slices(tmp_path):
    _tif(tmp_path / "0.tif", np.zeros((8, 8), np.uint8))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "1.png")
    _fails(tmp_path, "mixes TIFF and PNG")


def test_unreadable_slice_header_names_the_file(tmp_path):
    _tif(tmp_path / "0.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / "1.tif").write_bytes(b"garbage" * 20)
    _fails(tmp_path, r"1\.tif is not a readable image")


def test_stack_inside_slice_folder(tmp_path):
    _tif(tmp_path / "0.tif", np.zeros((2, 8, 8), np.uint8))
    _tif(tmp_path / "1.tif", np.zeros((2, 8, 8), np.uint8))
    _fails(tmp_path, "0.tif is not a 2D image")


def test_coloured_rgb_refused_but_grey_rgb_accepted(tmp_path):
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "red.png")
    _fails(tmp_path / "red.png", "colour channels differ")
    tifffile.imwrite(tmp_path / "red.tif", np.stack([rgb] * 2), photometric="rgb")
    _fails(tmp_path / "red.tif", "colour channels differ")


def test_real_4d_and_5d_refused(tmp_path):
    _fails(_tif(tmp_path / "tz.tif", np.zeros((2, 3, 8, 8), np.uint8), imagej=True,
                metadata={"axes": "TZYX"}), r"4-D image .*T=2, Z=3")
    arr = zarr.create_array(tmp_path / "a.zarr", shape=(2, 3, 4, 8, 8), dtype="uint8")
    assert arr.shape[0] == 2
    _fails(tmp_path / "a.zarr", "5 axes longer than 1")


def test_corrupt_zarr_metadata(tmp_path):
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_text("{not json")
    _fails(tmp_path / "bad.zarr", "not a readable Zarr store")


def test_zarr_group_needs_dataset(tmp_path):
    g = zarr.open_group(tmp_path / "g.zarr", mode="w")
    g.create_array("a", shape=(2, 4, 4), dtype="uint8")
    g.create_array("b", shape=(2, 4, 4), dtype="uint8")
    _fails(tmp_path / "g.zarr", r"a \(array \(2, 4, 4\)\), b .*pass dataset=")
    _fails(tmp_path / "g.zarr", "no dataset 'c'", dataset="c")


def test_hdf5_problems(tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF junk" * 20)
    _fails(tmp_path / "bad.h5", "not a readable HDF5 file")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["raw"] = np.zeros((2, 4, 4), np.uint8)
        f["seg"] = np.zeros((2, 4, 4), np.uint8)
        f["table"] = np.zeros(5)
    _fails(tmp_path / "two.h5", r"2 image datasets found \(/raw .*/seg.*\); pass dataset=")
    _fails(tmp_path / "two.h5", "no dataset 'em'", dataset="em")
    with h5py.File(tmp_path / "none.h5", "w") as f:
        f["table"] = np.zeros(5)
    _fails(tmp_path / "none.h5", "no 2D/3D image dataset")


def test_corrupt_mrc(tmp_path):
    (tmp_path / "bad.mrc").write_bytes(b"\x01" * 2000)
    _fails(tmp_path / "bad.mrc", "MRC")


def test_non_grey_dtype(tmp_path):
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["x"] = np.zeros((2, 4, 4), np.complex64)
    _fails(tmp_path / "c.h5", "complex64 is not a grey image type")


def test_dataset_argument_for_a_file_without_datasets(tmp_path):
    _fails(_tif(tmp_path / "a.tif", np.zeros((2, 4, 4), np.uint8)), "has no datasets", dataset="raw")


def test_float_labels_need_binarize(tmp_path):
    p = _tif(tmp_path / "f.tif", np.zeros((2, 4, 4), np.float32))
    with pytest.raises(VolumeFormatError, match="labels must be integers.*binarize=True"):
        open_labels(p)
    assert open_labels(p, binarize=True).dtype == np.uint8


def test_bad_voxel_size_argument(tmp_path):
    p = _tif(tmp_path / "a.tif", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="three positive numbers"):
        open_volume(p, voxel_size=(1, 2))


def test_damaged_slice_found_at_read_names_the_file(tmp_path):
    for z in range(3):
        Image.fromarray(np.full((8, 8), z, np.uint8)).save(tmp_path / f"{z}.png")
    raw = bytearray((tmp_path / "1.png").read_bytes())
    start = raw.index(b"IDAT") + 4
    raw[start:start + 8] = b"\xff" * 8  # header intact, compressed pixels garbage
    (tmp_path / "1.png").write_bytes(bytes(raw))
    v = open_volume(tmp_path)
    assert v.shape == (3, 8, 8)
    with pytest.raises(VolumeFormatError, match=r"1\.png.*slice 1 could not be decoded"):
        v[1]
