"""How alike neighbouring sections are: the labels' overlap and the image shift from one slice to the next.

Whether a model should read a slice's neighbours (2.5D input, ``ml.slice_context``) depends on how much a
neighbour shows of the slice's own objects: on the VNC ssTEM (45 nm sections) the mitochondria masks of
neighbouring slices overlap by IoU 0.66 while the sections are aligned to half a pixel (BENCHMARKS v37).

```bash
.venv/bin/python -m bench.slice_overlap --raw ../shared/data/vnc/stack1/raw --labels ../shared/data/vnc/stack1/mitochondria
```
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from skimage.registration import phase_cross_correlation

from ml.metrics import iou


def neighbour_overlap(raw, labels) -> dict:
    """Per pair of neighbouring slices: foreground IoU of the labels and the image's (dy, dx) shift (px)."""
    ious, shifts = [], []
    for z in range(int(raw.shape[0]) - 1):
        a, b = (np.asarray(labels[k]) != 0 for k in (z, z + 1))
        ious.append(float(iou(a, b)))
        shift, _, _ = phase_cross_correlation(np.asarray(raw[z], np.float32), np.asarray(raw[z + 1], np.float32),
                                              upsample_factor=4)
        shifts.append([float(v) for v in shift])
    return {"iou": ious, "shift": shifts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raw", required=True)
    p.add_argument("--labels", required=True, help="labels of the same shape (nonzero = the structure)")
    args = p.parse_args(argv)
    from ml.io.readers import open_labels, open_volume

    try:
        raw, labels = open_volume(args.raw), open_labels(args.labels)
        if tuple(raw.shape) != tuple(labels.shape) or raw.shape[0] < 2:
            raise ValueError(f"need labels of the raw's shape and 2 slices or more, got {tuple(raw.shape)} and "
                             f"{tuple(labels.shape)}")
    except (ValueError, OSError) as exc:
        p.exit(2, f"error: {' '.join(str(exc).split())}\n")
    out = neighbour_overlap(raw, labels)
    ious, shifts = np.array(out["iou"]), np.abs(np.array(out["shift"]))
    print(f"labels of neighbouring slices: IoU mean {ious.mean():.3f}, min {ious.min():.3f}, max {ious.max():.3f} "
          f"({len(ious)} pairs)")
    print(f"image shift between neighbours: median |dy| {np.median(shifts[:, 0]):.2f} px, |dx| "
          f"{np.median(shifts[:, 1]):.2f} px; largest {shifts.max():.2f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
