"""What ``python -m ml`` can check before any work: argument values and output paths.

A typo found after an hour of training costs the hour, so every value and every output
path is checked when the command starts, and each problem is one ``error: ...`` line.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence


class InputError(Exception):
    """Bad user input found by the CLI itself (shape mismatch, missing labels, ...)."""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error:`` line (argparse prints its whole usage block before it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


_NEGATIVE_VALUE = re.compile(r"^-[\d.]")


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--opt -1,1,1`` -> ``--opt=-1,1,1``: argparse takes '-1,1,1' for an option and says
    'expected one argument' instead of what is wrong with the value."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and _NEGATIVE_VALUE.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def voxel_size(text: str) -> tuple[float, float, float]:
    """``--voxel-size z,y,x``: three positive finite numbers (nm), as everywhere else (ml.volume)."""
    from ml.volume import as_voxel_size

    try:
        vs = as_voxel_size(text.split(","))
    except ValueError:
        vs = None
    if vs is None:
        raise argparse.ArgumentTypeError(f"expected three positive numbers z,y,x in nm (e.g. 40,4,4), got {text!r}")
    return vs


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type for counts and sizes that must be > 0."""
    return _bounded(kind, lambda v: v > 0, "a positive")


def non_negative(kind: type) -> Callable[[str], Any]:
    """An argparse type for counts where 0 means 'none' and a negative one is a typo."""
    return _bounded(kind, lambda v: v >= 0, "a non-negative")


def _bounded(kind: type, ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what} {kind.__name__}, got {text!r}")
        return value
    return parse


def z_weight(text: str) -> float:
    """``--z-consensus``: each neighbour's weight, in [0, 0.5) (``ml.z_consensus``)."""
    from ml.z_consensus import check_weight

    try:
        return check_weight(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a weight from 0 (off) to below 0.5, got {text!r}") from None


def probability(text: str) -> float:
    """``--threshold``: strictly between 0 and 1 (0 or 1 would make everything, or nothing, an object)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:  # also false for NaN
        raise argparse.ArgumentTypeError(f"expected a probability strictly between 0 and 1, got {text!r}")
    return value


def check_writable_parent(out: Path, flag: str) -> None:
    """The folder that will hold ``out`` exists or can be created, and accepts files.

    Probes the nearest existing folder with a temporary file, so nothing is left behind.
    """
    parent = Path(os.path.abspath(out)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {flag} {out}: {parent} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise InputError(f"cannot write {flag} {out}: {exc.strerror or exc} in {parent}") from None


def check_output_file(out: Path, flag: str, suffixes: Sequence[str] = ()) -> None:
    """An output file: not a folder, one of ``suffixes`` (when given), in a writable place."""
    if out.is_dir():
        raise InputError(f"{flag} {out} is a folder; give a file name")
    check_suffix(out, flag, suffixes)
    check_writable_parent(out, flag)


def check_suffix(out: Path, flag: str, suffixes: Sequence[str]) -> None:
    if suffixes and out.suffix.lower() not in suffixes:
        raise InputError(f"{flag} must end in {', '.join(suffixes)}; got {out.name}")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
