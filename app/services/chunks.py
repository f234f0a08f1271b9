"""Whole-volume prediction in z-chunks that every Celery worker that is up helps with.

The segmentation job's process coordinates: it creates the prediction group, sends one
``app.background.CHUNK_TASK`` per chunk (registered by ``app.worker``) and works through the chunks itself as
well, so it finishes with one worker or many, and never waits on a queue it is blocking. A
chunk is claimed by creating its claim file (``O_EXCL``) on a board folder beside the group;
the holder touches the claim after each slice and writes a done file (its slices'
uncertainties) at the end. A claim left untouched for ``STALE_S`` seconds (its worker died) is
taken over. Every slice is predicted by ``ml.infer.predict_slices`` with the settings stored
in the group and the seed of its z, so the result is identical to a single process's.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable

from app.services import factory, projects, training
from ml.files import atomic_write
from ml.progress import CancelFn, Cancelled, ProgressFn, report

CHUNK_SLICES = 4          # slices per chunk: small enough to spread a 20-slice volume over 5 workers
STALE_S = 60.0            # a claim untouched this long belongs to a dead worker
POLL_S = 0.2

Send = Callable[[list[dict]], Any]


def chunk_ranges(n_slices: int, size: int = CHUNK_SLICES) -> list[tuple[int, int]]:
    """``[z0, z1)`` ranges of at most ``size`` slices covering ``range(n_slices)``."""
    return [(z0, min(n_slices, z0 + size)) for z0 in range(0, n_slices, max(1, int(size)))]


class ChunkBoard:
    """Claims, heartbeats and results of one chunked prediction (files, so any process sees them)."""

    def __init__(self, folder: str | Path, create: bool = True):
        """``create``: the coordinator makes the board; a worker only joins one (``create=False``), so a
        task that arrives after its job finished and removed the board does not leave a new one behind."""
        self.folder = Path(folder)
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)

    def gone(self) -> bool:
        """The job is over and its board removed (or never made): nothing is left to claim."""
        return not self.folder.is_dir()

    def _claim(self, z0: int) -> Path:
        return self.folder / f"claim-{z0}"

    def _done(self, z0: int) -> Path:
        return self.folder / f"done-{z0}.json"

    def claim(self, z0: int) -> bool:
        """Take chunk ``z0`` (True) unless someone holds it or it is done."""
        if self._done(z0).exists():
            return False
        try:
            fd = os.open(self._claim(z0), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except (FileExistsError, FileNotFoundError):     # held, or the board was removed (the job is over)
            return False
        os.write(fd, f"{socket.gethostname()}:{os.getpid()}".encode())
        os.close(fd)
        return True

    def take_over(self, z0: int, stale_s: float = STALE_S) -> bool:
        """Claim a chunk whose holder stopped beating (a killed worker)."""
        try:
            age = time.time() - self._claim(z0).stat().st_mtime
        except FileNotFoundError:
            return self.claim(z0)
        if age < stale_s or self._done(z0).exists():
            return False
        self._claim(z0).unlink(missing_ok=True)
        return self.claim(z0)

    def beat(self, z0: int) -> None:
        os.utime(self._claim(z0))

    def finish(self, z0: int, uncertainty: dict[int, float]) -> None:
        text = json.dumps({str(z): u for z, u in uncertainty.items()})
        atomic_write(self._done(z0), lambda tmp: Path(tmp).write_text(text))

    def result(self, z0: int) -> dict[int, float] | None:
        try:
            return {int(z): float(u) for z, u in json.loads(self._done(z0).read_text()).items()}
        except FileNotFoundError:
            return None

    def cancel(self) -> None:
        (self.folder / "cancelled").touch()

    def cancelled(self) -> bool:
        return (self.folder / "cancelled").exists()


def board_for(pred_path: str | Path) -> Path:
    return Path(f"{pred_path}.chunks")


def _predict_chunk(model: Any, volume: Any, group: Any, board: ChunkBoard, z0: int, z1: int, device: Any,
                   cancel: CancelFn = None) -> None:
    from ml.infer import predict_slices

    def stop() -> bool:
        return board.cancelled() or bool(cancel and cancel())

    done = predict_slices(model, volume, group, range(z0, z1), device=device, cancel=stop,
                          on_slice=lambda z, u: board.beat(z0))
    board.finish(z0, done)


def run_chunk(config: Any, volume_id: int, model_id: int, pred_path: str, z0: int, z1: int) -> str:
    """``CHUNK_TASK``'s body on a worker: predict slices ``[z0, z1)`` unless someone else has them."""
    import zarr

    from app.compute import configure_torch_threads

    board = ChunkBoard(board_for(pred_path), create=False)
    if board.gone():
        return "finished"                # a late task: the coordinator did every chunk and cleaned up
    if board.cancelled() or not board.claim(z0):
        return "taken"
    configure_torch_threads(config)      # the same thread layout as the coordinator: the same numbers
    model, _ = training.load_model(config, model_id)
    device = factory.device_for(config)
    try:
        _predict_chunk(model, projects.open_volume(config, volume_id), zarr.open_group(pred_path, mode="r+"),
                       board, z0, z1, device)
    except Cancelled:
        return "cancelled"
    return "done"


def predict_in_chunks(config: Any, volume_id: int, model: Any, model_id: int, pred_path: Path, mc_passes: int,
                      send: Send, progress: ProgressFn = None, cancel: CancelFn = None,
                      stale_s: float = STALE_S) -> None:
    """Predict the volume into ``pred_path`` with every worker's help (see the module docstring)."""
    from ml.infer import finish_prediction, start_prediction

    info = projects.volume_info(config, volume_id)
    volume = projects.open_volume(config, volume_id)
    group = start_prediction(model, volume, pred_path, info["lo"], info["hi"], mc_passes=mc_passes,
                             classes=[c["name"] for c in projects.get_classes(config, volume_id)],
                             z_consensus=config.z_consensus)
    ranges = chunk_ranges(int(volume.shape[0]))
    board = ChunkBoard(board_for(pred_path))
    device, start = factory.device_for(config), time.monotonic()
    send([{"volume_id": volume_id, "model_id": model_id, "pred_path": str(pred_path), "z0": z0, "z1": z1}
          for z0, z1 in ranges[1:]])                     # the first chunk is ours from the start
    try:
        while True:
            if cancel is not None and cancel():
                raise Cancelled("cancelled")
            results = {z0: board.result(z0) for z0, _ in ranges}
            pending = [(z0, z1) for z0, z1 in ranges if results[z0] is None]
            report(progress, sum(z1 - z0 for z0, z1 in ranges if results[z0] is not None), int(volume.shape[0]),
                   stage="predict", chunks_left=len(pending))
            if not pending:
                break
            mine = next(((z0, z1) for z0, z1 in pending if board.claim(z0) or board.take_over(z0, stale_s)), None)
            if mine is None:
                if board.gone():                           # no claim can succeed again: fail, do not wait forever
                    raise RuntimeError(f"the chunk board {board.folder} was removed while the prediction ran")
                time.sleep(POLL_S)
                continue
            _predict_chunk(model, volume, group, board, *mine, device, cancel)
    except BaseException:
        board.cancel()                                    # the workers stop after their current slice
        raise
    uncertainty = {z: u for z0, _ in ranges for z, u in results[z0].items()}
    finish_prediction(group, [uncertainty[z] for z in sorted(uncertainty)], time.monotonic() - start)
    shutil.rmtree(board.folder, ignore_errors=True)
