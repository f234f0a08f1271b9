"""Expert labels: a sparse, crash-safe on-disk label store and the stroke rasteriser.

Label values: 0 = unlabeled, 1..C = class index + 1 (see docs/API.md, Labels).
"""
from ml.labels.chunks import LabelStoreError
from ml.labels.rasterize import parse_svg_path, rasterize_path, rasterize_path_bbox
from ml.labels.store import DEFAULT_CLASSES, MAX_UNDO, LabelStore

__all__ = [
    "DEFAULT_CLASSES",
    "MAX_UNDO",
    "LabelStore",
    "LabelStoreError",
    "parse_svg_path",
    "rasterize_path",
    "rasterize_path_bbox",
]
