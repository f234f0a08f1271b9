"""Whole-volume prediction in z-chunks (``app.services.chunks``): several workers, one result.

Workers are simulated by threads running the chunk task's body (``run_chunk``) on the same
workspace, so claims really race; the real Celery version is ``tests/e2e/test_chunks.py``.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import zarr

from app.services import chunks, factory, training
from ml.infer import open_prediction, predict_volume
from ml.progress import Cancelled
from tests.app.envs import TINY, add_model_version, synthetic_env


@pytest.fixture
def env(tmp_path):
    from ml.checkpoint import save_checkpoint

    e = synthetic_env(tmp_path / "ws", (10, 64, 64), seed=1, extra=TINY)
    model = factory.new_model(e.config, 2)
    e.mid = add_model_version(e, lambda p: save_checkpoint(p, model, ["background", "mitochondria"]))
    e.model, _ = training.load_model(e.config, e.mid)
    return e


def _threads_send(env, started: list, outcomes: list):
    def work(t):
        outcomes.append(chunks.run_chunk(env.config, t["volume_id"], t["model_id"], t["pred_path"], t["z0"], t["z1"]))

    def send(tasks):
        for t in tasks:
            th = threading.Thread(target=work, args=(t,))
            th.start()
            started.append(th)
    return send


def test_chunk_ranges_cover_every_slice_once():
    assert chunks.chunk_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunks.chunk_ranges(3, 4) == [(0, 3)]


def test_chunked_prediction_equals_one_process(env, tmp_path):
    from app.services import projects

    info = projects.volume_info(env.config, env.vid)
    single = predict_volume(env.model, projects.open_volume(env.config, env.vid), tmp_path / "one.zarr",
                            lo=info["lo"], hi=info["hi"], classes=["background", "mitochondria"])
    started, outcomes = [], []
    out = tmp_path / "chunked.zarr"
    chunks.predict_in_chunks(env.config, env.vid, env.model, env.mid, out, 0, _threads_send(env, started, outcomes))
    for th in started:
        th.join(60)
    assert len(outcomes) == 2 and "done" in outcomes, f"no chunk was predicted by a worker: {outcomes}"
    a, b = open_prediction(single), open_prediction(out)
    assert np.array_equal(np.asarray(a["prob"][:]), np.asarray(b["prob"][:]))
    assert a.attrs["slice_entropy"] == b.attrs["slice_entropy"] and b.attrs["complete"]
    assert not chunks.board_for(out).exists(), "the claim board was left behind"


def test_a_task_that_arrives_after_its_job_finished_does_nothing_and_leaves_nothing(env, tmp_path):
    """On a busy machine the coordinator may predict every chunk before a worker starts one (CI saw a late
    task re-create the removed board and fail on the renamed group)."""
    out, late = tmp_path / "late.zarr", []
    chunks.predict_in_chunks(env.config, env.vid, env.model, env.mid, out, 0, late.extend)
    assert late and not chunks.board_for(out).exists()
    before = np.asarray(open_prediction(out)["prob"][:])
    for t in late:
        outcome = chunks.run_chunk(env.config, t["volume_id"], t["model_id"], t["pred_path"], t["z0"], t["z1"])
        assert outcome == "finished"
    assert not chunks.board_for(out).exists(), "a late task left a claim board behind"
    assert np.array_equal(np.asarray(open_prediction(out)["prob"][:]), before)
    gone = tmp_path / "renamed.zarr.tmp-1"           # the job's temporary group, renamed when it finished
    assert chunks.run_chunk(env.config, env.vid, env.mid, str(gone), 0, 4) == "finished"
    assert not chunks.board_for(gone).exists()


def test_a_dead_workers_chunk_is_taken_over(env, tmp_path):
    out = tmp_path / "p.zarr"
    board = chunks.ChunkBoard(chunks.board_for(out))
    assert board.claim(4)                          # a worker claimed slices 4..8, then died
    old = time.time() - 10
    os.utime(board.folder / "claim-4", (old, old))
    chunks.predict_in_chunks(env.config, env.vid, env.model, env.mid, out, 0, lambda tasks: None, stale_s=5)
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["complete"] and np.asarray(g["prob"][1, 4:8]).any()


def test_a_fresh_claim_is_waited_for_not_stolen(env, tmp_path):
    board = chunks.ChunkBoard(chunks.board_for(tmp_path / "w.zarr"))
    assert board.claim(0)
    assert not board.take_over(0, stale_s=60) and not board.claim(0)


def test_cancel_stops_the_coordinator_and_tells_the_workers(env, tmp_path):
    out = tmp_path / "c.zarr"
    with pytest.raises(Cancelled):
        chunks.predict_in_chunks(env.config, env.vid, env.model, env.mid, out, 0, lambda tasks: None,
                                 cancel=lambda: True)
    assert chunks.ChunkBoard(chunks.board_for(out)).cancelled()
    assert chunks.run_chunk(env.config, env.vid, env.mid, str(out), 4, 8) == "taken"
