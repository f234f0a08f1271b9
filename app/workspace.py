"""The one place that decides where files live inside the workspace folder.

Everything the app writes (database, volumes, labels, models, predictions, exports,
thumbnails, uploads, job cache, compute lock) sits under one root, so copying the
folder copies the whole state.
"""
from __future__ import annotations

from pathlib import Path


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def _dir(self, *parts: str | int) -> Path:
        p = self.root.joinpath(*(str(x) for x in parts))
        p.mkdir(parents=True, exist_ok=True)
        return p

    def ensure(self) -> "Workspace":
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def db_path(self) -> Path:
        return self.root / "activeseg.sqlite"

    @property
    def lock_path(self) -> Path:
        """File lock that serialises compute (GPU) jobs across processes."""
        return self.root / "compute.lock"

    def jobs_cache_dir(self) -> Path:
        return self._dir("jobs_cache")

    def job_log_path(self, job_id: int) -> Path:
        """Output of a job run in its own process (``app.background``)."""
        return self._dir("jobs_logs") / f"job_{job_id}.log"

    def volume_dir(self, vid: int) -> Path:
        return self._dir("volumes", vid)

    def volume_store_path(self, vid: int) -> Path:
        """Zarr copy of an uploaded/synthetic volume."""
        return self.volume_dir(vid) / "raw.zarr"

    def ground_truth_path(self, vid: int) -> Path:
        """Dense reference labels (e.g. the synthetic demo's), for evaluation."""
        return self.volume_dir(vid) / "ground_truth.zarr"

    def pretrained_path(self, vid: int) -> Path:
        """Self-supervised pre-trained body weights of a volume (``ml.pretrain`` writes it, a sidecar
        ``.json`` beside it, and ``<path>.partial`` while unfinished). Asking creates nothing."""
        return self.root / "volumes" / str(vid) / "pretrained.pt"

    def labels_dir(self, vid: int) -> Path:
        return self.root / "labels" / str(vid)   # LabelStore.create makes it

    def model_path(self, mid: int) -> Path:
        return self._dir("models") / f"model_{mid}.pt"

    def prediction_path(self, vid: int, mid: int) -> Path:
        return self._dir("predictions") / f"vol{vid}_model{mid}.zarr"

    def preview_dir(self, vid: int, mid: int) -> Path:
        """On-demand xy slice predictions of a model not yet run on the whole volume (``previews``)."""
        return self.root / "previews" / f"vol{vid}_model{mid}"

    def live_draft_path(self, project_id: int) -> Path:
        """Live mode's draft model of a project (a checkpoint; a version only once kept)."""
        return self._dir("live", project_id) / "draft.pt"

    def live_view_path(self, vid: int) -> Path:
        """The live draft's prediction of the viewed area of a volume (``app.services.live``)."""
        return self._dir("live", "views") / f"vol{vid}.npz"

    def instances_path(self, seg_id: int) -> Path:
        return self._dir("segmentations", seg_id) / "instances.zarr"

    def segmentation_dir(self, seg_id: int) -> Path:
        return self._dir("segmentations", seg_id)

    def exports_dir(self) -> Path:
        return self._dir("exports")

    def thumbs_dir(self, round_id: int) -> Path:
        return self._dir("thumbs", round_id)

    def uploads_dir(self) -> Path:
        return self._dir("uploads")
