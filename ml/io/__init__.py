"""Volume I/O: lazy readers for EM formats, intensity windows, and exporters for other tools.

The readers (tifffile, zarr, h5py, mrcfile behind them) load on first use, so importing a
submodule such as ``ml.io.normalize`` costs no format library (the web server starts faster).
"""
from ml.io.errors import SUPPORTED_FORMATS, VolumeFormatError, VolumeNotFoundError
from ml.io.normalize import normalize, to_uint8

__all__ = ["SUPPORTED_FORMATS", "VolumeFormatError", "VolumeNotFoundError", "normalize", "open_labels",
           "open_volume", "to_uint8"]


def __getattr__(name: str):
    if name in ("open_volume", "open_labels"):
        from ml.io import readers

        return getattr(readers, name)
    raise AttributeError(f"module 'ml.io' has no attribute {name!r}")
