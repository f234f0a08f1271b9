"""Volume I/O: lazy readers for EM formats, intensity windows, and exporters for other tools."""
from ml.io.errors import SUPPORTED_FORMATS, VolumeFormatError, VolumeNotFoundError
from ml.io.normalize import normalize, to_uint8
from ml.io.readers import open_labels, open_volume

__all__ = ["SUPPORTED_FORMATS", "VolumeFormatError", "VolumeNotFoundError", "normalize", "open_labels",
           "open_volume", "to_uint8"]
