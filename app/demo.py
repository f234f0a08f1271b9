"""Demo project: a ready-to-label volume on first start (synthetic EM with ground truth, or a path)."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from app.config import Config
from app.services import projects

log = logging.getLogger(__name__)
DEMO_PROJECT = "Demo"
SYNTHETIC_VOXEL_NM = (40.0, 5.0, 5.0)


def _read_ground_truth(path: Path | None):
    """Dense binary ground truth (e.g. the VNC 'mitochondria' PNGs) as a Volume, or None."""
    if path is None or not path.exists():
        return None
    from ml.io.readers import open_labels

    return open_labels(str(path))


def ensure_demo(config: Config, spec: str | None = None, ground_truth: str | None = None,
                pretrain: bool = False) -> dict | None:
    """Create the demo project once; ``spec`` = 'synthetic' | a path | 'none'. Returns the project.

    ``pretrain``: start pre-training the new demo volume in the background (the entry points pass
    ``config.pretrain_auto``); nothing starts when the demo already existed.
    """
    spec = (spec if spec is not None else config.demo) or "none"
    if spec.lower() == "none":
        return None
    proj = projects.find_project(config, DEMO_PROJECT) or projects.create_project(config, DEMO_PROJECT)
    if projects.list_volumes(config, proj["id"]):
        return proj
    if spec.lower() == "synthetic":
        from ml.synthetic import make_em_volume

        log.info("generating synthetic demo volume %s", config.demo_shape)
        raw, mito = make_em_volume(tuple(config.demo_shape), seed=0)
        rec = projects.add_volume_from_array(config, proj["id"], "synthetic EM", raw, voxel_size=SYNTHETIC_VOXEL_NM,
                                             ground_truth=(mito > 0).astype("uint8"))
    else:
        rec = projects.add_volume_from_path(config, proj["id"], spec)
        gt_path = Path(ground_truth) if ground_truth else None
        gt = _read_ground_truth(gt_path)
        if gt is not None:
            _store_ground_truth(config, rec["id"], gt)
    if pretrain:
        _start_pretraining(config, rec["id"])
    return proj


def needs_generation(config: Config, spec: str | None = None) -> bool:
    """True on a first start with the synthetic demo: it has to be generated (tens of seconds)."""
    spec = (spec if spec is not None else config.demo) or "none"
    if spec.lower() != "synthetic":
        return False
    proj = projects.find_project(config, DEMO_PROJECT)
    return proj is None or not projects.list_volumes(config, proj["id"])


class DemoPreparation:
    """The synthetic demo generated in a thread, so a first start answers at once; the page says
    "preparing" until ``ready`` (``layouts.page.preparing_layout``). Later starts find it cached."""

    def __init__(self, config: Config, pretrain: bool = False):
        self.config, self.pretrain, self.error = config, pretrain, None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-preparation", daemon=True)

    def start(self) -> "DemoPreparation":
        self._thread.start()
        return self

    @property
    def ready(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _run(self) -> None:
        try:
            ensure_demo(self.config, "synthetic", pretrain=self.pretrain)
        except Exception as exc:  # noqa: BLE001 - logged; the app still works without a demo
            self.error = str(exc)
            log.error("the demo volume could not be prepared: %s", exc)
        finally:
            self._done.set()


def _start_pretraining(config: Config, vid: int) -> None:
    from app.services import pretraining

    try:
        log.info("pre-training the demo volume in the background (job %d)", pretraining.start(config, vid))
    except Exception as exc:  # noqa: BLE001 - the app works without it; the Data panel shows the state
        log.error("not pre-training the demo volume: %s", exc)


def _store_ground_truth(config: Config, vid: int, gt) -> None:
    """Ground truth beside the volume as a binary uint8 mask (1 = object, e.g. mitochondria)."""
    import numpy as np

    from app.db import session_scope
    from app.models import VolumeRecord
    from app.workspace import Workspace

    class _Mapped:
        shape, dtype = gt.shape, np.dtype(np.uint8)

        def __getitem__(self, z):
            return (np.asarray(gt[z]) > 0).astype(np.uint8)

    path = projects.write_zarr(Workspace(config.workspace).ground_truth_path(vid), _Mapped())
    with session_scope(config) as s:
        s.get(VolumeRecord, vid).gt_path = str(path)
