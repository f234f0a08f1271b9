"""Running one ``python -m ml`` command: progress lines, a clean Ctrl-C, the device, the intensity window.

Shared by every subcommand module (``ml.cli``, ``ml.cli_train``, ``ml.cli_pretrain``), which
import it and never each other.
"""
from __future__ import annotations

import signal
import sys
import time

import numpy as np

from ml.cli_checks import InputError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
class Progress:
    """``progress(done, total, info)`` printing at most one line per ``interval`` s (plus marks and the end)."""

    def __init__(self, label: str, unit: str, interval: float = 5.0, mark: int = 0, stream=None):
        self.label, self.unit, self.interval, self.mark = label, unit, interval, mark
        self.stream = stream or sys.stderr
        self.last: float | None = None

    def __call__(self, done: int, total: int, info: dict) -> None:
        now = time.monotonic()
        marked = self.mark > 0 and done % self.mark == 0
        if done < total and not marked and self.last is not None and now - self.last < self.interval:
            return
        self.last = now
        parts = [f"{self.label} {done}/{total} {self.unit}"]
        if info.get("phase") not in (None, "training"):
            parts.append(str(info["phase"]))         # e.g. pseudo-labeling, self-training
        for key in ("loss", "val_iou"):
            if isinstance(info.get(key), (int, float)):
                parts.append(f"{key} {info[key]:.4f}")
        if isinstance(info.get("eta_s"), (int, float)) and done < total:
            parts.append(f"eta {_duration(info['eta_s'])}")
        print("  ".join(parts), file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Interrupt:
    """First Ctrl-C asks the running job to stop cleanly (cancel()), a second one kills."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> "Interrupt":
        def handler(signum, frame):
            self.requested = True
            print("\nstopping after the current step (Ctrl-C again to abort)...", file=sys.stderr, flush=True)
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
        self._previous = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __call__(self) -> bool:
        return self.requested


def device_from_arg(name: str | None):
    import torch

    from ml.device import pick_device

    try:
        device = pick_device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown --device {name!r} ({exc}); use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA GPU is available; use --device cpu")
    return device


def intensity_window(volume, norm: dict) -> tuple[float, float]:
    """Intensity window: absolute lo/hi when stored, else the volume's percentiles.

    Checked here, before any output exists, rather than by ``normalize`` in the middle of the work.
    """
    if "lo" in norm and "hi" in norm:
        lo, hi = float(norm["lo"]), float(norm["hi"])
    else:
        lo, hi = volume.percentiles(float(norm.get("lo_pct", 1.0)), float(norm.get("hi_pct", 99.5)))
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise InputError(f"unusable intensity window lo={lo}, hi={hi} for {volume.name}")
    return lo, hi
