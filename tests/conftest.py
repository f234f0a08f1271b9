"""Shared fixtures: small synthetic volumes, one torch thread (tests share 2 cores)."""
from __future__ import annotations

from pathlib import Path

import pytest

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

VNC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vnc"


@pytest.fixture(scope="session")
def synthetic_volume():
    """(raw uint8 (6,128,128), mito mask uint8) with known ground truth."""
    from ml.synthetic import make_em_volume

    return make_em_volume((6, 128, 128), seed=1)


@pytest.fixture(scope="session")
def vnc_dir() -> Path:
    """The real VNC dataset beside the repo; tests that need it skip with a reason when absent."""
    if not (VNC / "stack1" / "raw").is_dir():
        pytest.skip(f"VNC dataset not found at {VNC}")
    return VNC
