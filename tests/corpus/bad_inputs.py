"""The bad-input corpus: each entry builds one bad input (nothing is stored in the repository).

``VOLUMES`` are files or folders given where a raw volume is expected (``python -m ml predict
--raw``, ``train --raw``, the app's "add by path" and upload); each builder writes its input
under ``root`` and returns the path. The other corpora are given where labels, a model, an
option or a setting are expected. Every entry is refused with one clear line and leaves the
workspace as it was (``tests/corpus/test_*.py``).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import tifffile

Builder = Callable[[Path], Path]
SHAPE = (4, 32, 32)


def _tif(path: Path, arr: np.ndarray, **kw) -> Path:
    tifffile.imwrite(path, arr, **kw)
    return path


def _good(root: Path) -> Path:
    return _tif(root / "good.tif", (np.arange(np.prod(SHAPE)) % 200).astype(np.uint8).reshape(SHAPE),
                photometric="minisblack")


def zero_bytes(root: Path) -> Path:
    (root / "empty.tif").write_bytes(b"")
    return root / "empty.tif"


def truncated_tiff(root: Path) -> Path:
    data = _good(root).read_bytes()
    (root / "truncated.tif").write_bytes(data[: len(data) // 3])
    return root / "truncated.tif"


def text_as_tiff(root: Path) -> Path:
    (root / "notes.tif").write_text("these are my notes, not an image\n")
    return root / "notes.tif"


def tiff_4d(root: Path) -> Path:
    return _tif(root / "4d.tif", np.zeros((2, 3, 32, 32), np.uint8), photometric="minisblack")


def all_nan_float(root: Path) -> Path:
    return _tif(root / "nan.tif", np.full(SHAPE, np.nan, np.float32), photometric="minisblack")


def all_inf_float(root: Path) -> Path:
    return _tif(root / "inf.tif", np.full(SHAPE, np.inf, np.float32), photometric="minisblack")


def one_voxel(root: Path) -> Path:
    return _tif(root / "voxel.tif", np.zeros((1, 1, 1), np.uint8), photometric="minisblack")


def one_row(root: Path) -> Path:
    return _tif(root / "row.tif", np.zeros((3, 1, 64), np.uint8), photometric="minisblack")


def mismatched_slices(root: Path) -> Path:
    folder = root / "mismatched"
    folder.mkdir()
    _tif(folder / "00.tif", np.zeros((32, 32), np.uint8))
    _tif(folder / "01.tif", np.zeros((40, 32), np.uint8))
    return folder


def empty_folder(root: Path) -> Path:
    (root / "nothing").mkdir()
    return root / "nothing"


def folder_of_one_non_image(root: Path) -> Path:
    folder = root / "readme_only"
    folder.mkdir()
    (folder / "README.txt").write_text("the slices are on the other disk\n")
    return folder


def zarr_without_metadata(root: Path) -> Path:
    folder = root / "bare.zarr"
    (folder / "c" / "0").mkdir(parents=True)
    (folder / "c" / "0" / "0").write_bytes(os.urandom(64))
    return folder


def zarr_group_without_array(root: Path) -> Path:
    import zarr

    g = zarr.open_group(str(root / "group.zarr"), mode="w")
    g.create_group("labels")
    return root / "group.zarr"


def hdf5_without_a_3d_dataset(root: Path) -> Path:
    import h5py

    with h5py.File(root / "table.h5", "w") as f:
        f.create_dataset("table", data=np.arange(10))
    return root / "table.h5"


def broken_mrc(root: Path) -> Path:
    header = bytearray(1024)
    header[0:12] = struct.pack("<3i", 32, 32, 4)
    header[12:16] = struct.pack("<i", 99)          # mode 99: no such MRC mode
    header[208:212] = b"MAP "
    (root / "broken.mrc").write_bytes(bytes(header) + os.urandom(128))
    return root / "broken.mrc"


def missing_path(root: Path) -> Path:
    return root / "not_there.tif"


def unknown_format(root: Path) -> Path:
    (root / "volume.xyz").write_bytes(os.urandom(256))
    return root / "volume.xyz"


def absurd_tiff_header(root: Path) -> Path:
    """A valid little TIFF whose header claims 2^31 x 2^31 pixels."""
    path = _tif(root / "huge.tif", np.zeros((8, 8), np.uint8), photometric="minisblack")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        for tag in ("ImageWidth", "ImageLength"):
            t = page.tags[tag]
            fmt = "<I" if t.dtype_name in ("LONG", "uint32") or t.count * 4 == 4 else "<H"
            data[t.valueoffset:t.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, 2**31 if fmt == "<I" else 65535)
    path.write_bytes(bytes(data))
    return path


#: name -> builder: raw-volume inputs refused everywhere a volume is read
VOLUMES: dict[str, Builder] = {f.__name__: f for f in (
    zero_bytes, truncated_tiff, text_as_tiff, tiff_4d, all_nan_float, all_inf_float, one_voxel, one_row,
    mismatched_slices, empty_folder, folder_of_one_non_image, zarr_without_metadata, zarr_group_without_array,
    hdf5_without_a_3d_dataset, broken_mrc, missing_path, unknown_format, absurd_tiff_header)}


def coloured_rgb_tiff(root: Path) -> Path:
    rgb = np.zeros((4, 32, 32, 3), np.uint8)
    rgb[..., 0] = 200                               # red: the channels differ, no grey to take
    return _tif(root / "red.tif", rgb, photometric="rgb")


VOLUMES["coloured_rgb_tiff"] = coloured_rgb_tiff


def random_checkpoint(root: Path) -> Path:
    (root / "model.pt").write_bytes(os.urandom(4096))
    return root / "model.pt"


def truncated_checkpoint(root: Path) -> Path:
    import torch

    from ml.checkpoint import save_checkpoint
    from ml.model import UNet2D

    torch.manual_seed(0)
    path = save_checkpoint(root / "full.pt", UNet2D(base=4, depth=2), ["background", "mito"])
    data = path.read_bytes()
    (root / "cut.pt").write_bytes(data[: len(data) // 2])
    return root / "cut.pt"


#: name -> builder: files given as ``--model``
MODELS: dict[str, Builder] = {f.__name__: f for f in (random_checkpoint, truncated_checkpoint, text_as_tiff, missing_path)}

#: malformed ``--voxel-size`` values
VOXEL_SIZES = ["a,b", "0,1,1", "-1,1,1", "1,1", "nan,1,1", "1,inf,1", "1,1,1,1"]

#: (variable, value, words the one-line refusal must contain): settings read at start-up
SETTINGS = [
    ("APP_MODEL", "{base: 8}", "APP_MODEL"),
    ("APP_MODEL", "[8]", "APP_MODEL"),
    ("APP_TRAIN", '{"crop": -5}', "APP_TRAIN: crop=-5"),
    ("APP_TRAIN", '{"lr": "fast"}', "APP_TRAIN: lr='fast'"),
    ("APP_PRETRAIN", '{"steps": 0}', "APP_PRETRAIN: steps=0"),
    ("APP_LIVE", '{"stepz": 3}', "APP_LIVE: unknown setting"),
    ("APP_DEMO_SHAPE", "0,0,0", "APP_DEMO_SHAPE"),
    ("APP_DEMO_SHAPE", "16,512", "APP_DEMO_SHAPE"),
    ("APP_MAX_UPLOAD_MB", "lots", "APP_MAX_UPLOAD_MB"),
    ("APP_JOB_BACKEND", "rq", "APP_JOB_BACKEND"),
    ("APP_DEVICE", "tpu", "APP_DEVICE"),
    ("APP_AUTH", "1", "APP_SECRET_KEY"),
]
