"""LabelStore: round trips, undo, counts, import, classes, sharing and crash safety."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ml.labels import DEFAULT_CLASSES, LabelStore, LabelStoreError, rasterize_path_bbox
from ml.labels.chunks import decode_chunk
from ml.progress import Cancelled

REPO = Path(__file__).resolve().parents[2]
SHAPE = (3, 300, 520)  # edge tiles on both axes: 300 = 256 + 44, 520 = 2 * 256 + 8


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore.create(tmp_path / "labels", SHAPE)


def ring(h, w):
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(yy - h / 2, xx - w / 2)
    return (d > min(h, w) / 4) & (d < min(h, w) / 2)


def expected_counts(arr, n_classes=2):
    bc = np.bincount(arr.ravel(), minlength=n_classes + 1)
    return {v: int(bc[v]) for v in range(1, n_classes + 1)}


def test_paint_round_trip_across_tiles(store):
    mirror = np.zeros(SHAPE, np.uint8)
    m = ring(120, 200)
    store.paint(1, m, 2, y0=200, x0=180)  # spans 2 x 2 tiles, reaches the edge tiles
    mirror[1, 200:320, 180:380][m[:100]] = 2  # rows beyond 300 are clipped
    store.paint(2, (np.ones((10, 10), bool), 290, 510), 1)  # tuple form, bottom-right corner tile
    mirror[2, 290:300, 510:520] = 1
    assert np.array_equal(store.to_array(), mirror)
    assert np.array_equal(store.read_slice(1), mirror[1])
    assert np.array_equal(store.read(1, 190, 260, 250, 300), mirror[1, 190:260, 250:300])
    assert np.array_equal(store.read(1, 250, 999, 500), mirror[1, 250:, 500:])  # clipped like numpy
    assert np.array_equal(store.read_block(slice(1, 3), slice(240, 300), slice(None)), mirror[1:3, 240:])
    assert np.array_equal(store[1:3, 250:260, 505:], mirror[1:3, 250:260, 505:])
    assert np.array_equal(store[2, 295], mirror[2, 295])
    assert np.array_equal(store[:, 250, :], mirror[:, 250, :]) and np.array_equal(store[..., 300], mirror[..., 300])
    assert store.counts() == expected_counts(mirror)


def test_paint_changes_only_mask_pixels_and_clips_outside(store):
    store.paint(0, np.ones((100, 100), bool), 1, 0, 0)
    m = ring(60, 60)
    store.paint(0, m, 2, -20, -30)  # partly outside the image: clipped
    sl = store.read_slice(0)
    expect = np.zeros(SHAPE[1:], np.uint8)
    expect[:100, :100] = 1
    expect[:40, :30][m[20:, 30:]] = 2
    assert np.array_equal(sl, expect)


def test_rasterized_stroke_paints_its_bbox(store):
    crop, y0, x0 = rasterize_path_bbox("M240,250L270,262", SHAPE[1:], width=6)
    store.paint(0, crop, 2, y0, x0)
    sl = store.read_slice(0)
    assert sl[250, 240] == 2 and sl[262, 270] == 2 and sl[250, 280] == 0
    assert store.counts()[2] == int(crop.sum())


def test_undo_restores_previous_state_and_persists(tmp_path):
    path = tmp_path / "l"
    s = LabelStore.create(path, SHAPE)
    states = [s.to_array()]
    rng = np.random.default_rng(0)
    for i, value in enumerate([1, 2, 0, 2]):
        s.paint(i % 3, rng.random((150, 300)) < 0.5, value, 100, 150)
        states.append(s.to_array())
    reopened = LabelStore.open(path)  # undo history is on disk
    for state in reversed(states[:-1]):
        assert reopened.undo()
        assert np.array_equal(reopened.to_array(), state)
        assert reopened.counts() == expected_counts(state)
    assert reopened.undo() is None
    assert s.labeled_boxes() == [] and not any((path / "chunks").iterdir())  # empty tiles deleted


def test_undo_history_is_bounded(tmp_path):
    s = LabelStore.create(tmp_path / "l", SHAPE, max_undo=3)
    for i in range(5):
        s.paint(0, np.ones((5, 5), bool), 2, 10 * i, 0)
    assert len(list((tmp_path / "l" / "history").iterdir())) == 3
    assert [bool(s.undo()) for _ in range(4)] == [True, True, True, False]
    assert s.counts()[2] == 2 * 25  # the two oldest strokes can no longer be undone


def test_counts_after_erase_and_undo(store):
    store.paint(0, np.ones((50, 50), bool), 1, 0, 0)
    store.paint(0, np.ones((50, 50), bool), 2, 25, 25)
    assert store.counts() == {1: 2500 - 625, 2: 2500}
    store.paint(0, np.ones((30, 30), bool), 0, 10, 10)  # erase over both classes
    assert store.counts() == expected_counts(store.to_array())
    store.undo()
    assert store.counts() == {1: 2500 - 625, 2: 2500}


def test_labeled_boxes_per_tile(store):
    store.paint(1, np.ones((20, 30), bool), 2, 250, 240)  # touches 4 tiles
    assert store.labeled_boxes() == [
        (1, 250, 256, 240, 256), (1, 250, 256, 256, 270), (1, 256, 270, 240, 256), (1, 256, 270, 256, 270)
    ]


def test_stroke_log_records_effort(store):
    t0 = time.time()
    a = store.paint(0, np.ones((4, 5), bool), 2, 7, 9)
    b = store.paint(1, np.eye(3, dtype=bool), 0, 0, 0)
    store.undo()
    log = store.stroke_log()
    assert [e["id"] for e in log] == [a, b] and b > a
    assert log[0] | {"time": 0} == {"id": a, "z": 0, "value": 2, "n_pixels": 20, "changed": 20, "time": 0,
                                    "bbox": [7, 11, 9, 14], "undone": False}
    assert log[1]["undone"] is True and log[1]["changed"] == 0
    assert t0 <= log[0]["time"] <= log[1]["time"] <= time.time()


def test_import_dense_numpy_default_and_mapping(tmp_path):
    from ml.synthetic import make_em_volume

    _, mito = make_em_volume((2, 300, 260), seed=3)
    s = LabelStore.create(tmp_path / "a", mito.shape)
    s.paint(0, np.ones((3, 3), bool), 1)
    s.import_dense(mito)  # default: 0 -> background (1), nonzero -> mitochondria (2)
    assert np.array_equal(s.to_array(), np.where(mito > 0, 2, 1))
    assert s.undo() is None  # import clears the undo history
    binary = (mito > 0).astype(np.uint8) * 255
    counts = s.import_dense(binary, mapping={255: 2})  # zeros unmapped -> unlabeled
    assert np.array_equal(s.to_array(), np.where(mito > 0, 2, 0))
    assert counts == {1: 0, 2: int((mito > 0).sum())}
    s.import_dense(np.full(mito.shape, 7, np.int32), mapping={7: 1}, merge=True)
    assert (s.to_array() == 1).all()


def test_import_dense_from_zarr_and_memmap_streams_by_z(tmp_path):
    import zarr

    data = (np.arange(3 * 40 * 50).reshape(3, 40, 50) % 5).astype(np.uint8)
    z = zarr.create_array(store=str(tmp_path / "l.zarr"), shape=data.shape, chunks=(1, 40, 50), dtype="uint8")
    z[:] = data
    mm = np.lib.format.open_memmap(tmp_path / "l.npy", mode="w+", dtype=np.uint16, shape=data.shape)
    mm[:] = data
    mm.flush()
    mapping = {0: 0, 1: 1, 2: 1, 4: 2}
    expect = np.select([data == 1, data == 2, data == 4], [1, 1, 2], 0)
    for src in (z, np.load(tmp_path / "l.npy", mmap_mode="r")):
        s = LabelStore.create(tmp_path / f"s{type(src).__name__}", data.shape)
        calls = []
        s.import_dense(src, mapping, progress=lambda d, t, info: calls.append((d, t)))
        assert np.array_equal(s.to_array(), expect)
        assert calls == [(1, 3), (2, 3), (3, 3)]


def test_import_dense_cancel_keeps_whole_slices(tmp_path):
    s = LabelStore.create(tmp_path / "s", (4, 20, 20))
    done = []
    with pytest.raises(Cancelled):
        s.import_dense(np.ones((4, 20, 20), np.uint8), progress=lambda d, t, i: done.append(d),
                       cancel=lambda: len(done) >= 2)
    arr = s.to_array()
    assert (arr[:2] == 2).all() and (arr[2:] == 0).all()


def test_import_dense_rejects_bad_input(store):
    with pytest.raises(ValueError, match="shape"):
        store.import_dense(np.zeros((3, 10, 10)))
    with pytest.raises(ValueError, match="0..2"):
        store.import_dense(np.zeros(SHAPE, np.uint8), mapping={0: 5})


def test_set_classes_add_rename_and_guard_removal(store):
    assert store.classes == DEFAULT_CLASSES
    store.set_classes(DEFAULT_CLASSES + [{"name": "membrane", "color": "#2ca02c"}])
    store.paint(0, np.ones((3, 3), bool), 3)
    assert store.counts() == {1: 0, 2: 0, 3: 9}
    with pytest.raises(ValueError, match="membrane"):
        store.set_classes(DEFAULT_CLASSES)
    store.set_classes(["bg", "mito", "membrane"])  # rename, default colours
    assert [c["name"] for c in store.classes] == ["bg", "mito", "membrane"]
    store.paint(0, np.ones((3, 3), bool), 0)
    store.set_classes(DEFAULT_CLASSES)  # empty class can be removed
    assert store.counts() == {1: 0, 2: 0}
    with pytest.raises(ValueError, match="unique"):
        store.set_classes(["a", "a"])


def test_bad_arguments_raise_typed_errors(tmp_path, store):
    with pytest.raises(ValueError, match="1..2"):
        store.paint(0, np.ones((2, 2), bool), 3)
    with pytest.raises(TypeError, match="bool"):
        store.paint(0, np.ones((2, 2), np.uint8), 1)
    with pytest.raises(IndexError):
        store.paint(3, np.ones((2, 2), bool), 1)
    with pytest.raises(ValueError, match="no True pixels"):
        store.paint(0, np.ones((2, 2), bool), 1, 400, 0)
    with pytest.raises(FileExistsError):
        LabelStore.create(store.path, SHAPE)
    with pytest.raises(FileNotFoundError):
        LabelStore.open(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="shape"):
        LabelStore.open_or_create(store.path, (1, 2, 3))
    store.paint(0, np.ones((2, 2), bool), 1)
    next((store.path / "chunks").iterdir()).write_bytes(b"garbage")
    with pytest.raises(LabelStoreError, match="corrupt"):
        store.read_slice(0)


def test_two_objects_share_one_directory(tmp_path):
    a = LabelStore.create(tmp_path / "s", SHAPE)
    b = LabelStore.open(tmp_path / "s")
    a.paint(0, np.ones((5, 5), bool), 2)
    assert b.read(0, 0, 5, 0, 5).tolist() == [[2] * 5] * 5 and b.counts()[2] == 25
    b.paint(0, np.ones((5, 5), bool), 1, 10, 10)
    assert a.counts() == {1: 25, 2: 25}
    assert a.undo() and b.counts() == {1: 0, 2: 25}  # undo is global: b's stroke was last
    b.set_classes(DEFAULT_CLASSES + ["x"])
    assert len(a.classes) == 3


def test_concurrent_threads_and_process_lose_no_stroke(tmp_path):
    s = LabelStore.create(tmp_path / "s", (3, 64, 256), durable=False)
    script = "import numpy as np; from ml.labels import LabelStore; s = LabelStore.open(%r, durable=False)\n" \
             "for i in range(30): s.paint(2, np.ones((2, 2), bool), 2, 0, 2 * i)" % str(s.path)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})

    def worker(z):
        for i in range(30):
            s.paint(z, np.ones((2, 2), bool), 1, 0, 2 * i)

    threads = [threading.Thread(target=worker, args=(z,)) for z in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert proc.wait(timeout=60) == 0
    assert s.counts() == {1: 2 * 30 * 4, 2: 30 * 4} == expected_counts(s.to_array())
    assert len(s.stroke_log()) == 90 and len({e["id"] for e in s.stroke_log()}) == 90


CRASH_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from ml.labels import LabelStore, journal
    path, stage, ready = sys.argv[1:4]
    seen = []
    def hook(s):
        if s == stage:
            seen.append(s)
            if len(seen) == 2:  # second tile of the stroke: mid-transaction
                open(ready, "w").close()
                time.sleep(60)
    journal._hook = hook
    LabelStore.open(path).paint(1, np.ones((200, 300), bool), 2, 150, 200)  # 2 x 3 tiles
""")


@pytest.mark.parametrize("stage, after", [("journal", False), ("applied", True)])
def test_sigkill_mid_stroke_is_all_or_nothing(tmp_path, stage, after):
    path = tmp_path / "s"
    s = LabelStore.create(path, SHAPE)
    s.paint(1, ring(200, 200), 1, 100, 100)  # an earlier stroke that must survive
    before = s.to_array()
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(path), stage, str(ready)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 60
    while not ready.exists():
        assert proc.poll() is None and time.time() < deadline, "crash helper did not reach the hook"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (path / "journal" / "manifest.json").exists() == after  # killed before / after the commit point
    if after:  # the tiles on disk really are half-applied before recovery
        tiles = [decode_chunk((path / "chunks" / f"1.{cy}.{cx}.z").read_bytes()) if
                 (path / "chunks" / f"1.{cy}.{cx}.z").exists() else None for cy in (0, 1) for cx in (0, 1, 2)]
        n_new = sum(t is not None and (t == 2).any() for t in tiles)
        assert 0 < n_new < 6
    stroke = before.copy()
    stroke[1, 150:300, 200:500] = 2
    assert np.array_equal(s.to_array(), stroke if after else before)  # an existing reader recovers too
    reopened = LabelStore.open(path)
    assert np.array_equal(reopened.to_array(), stroke if after else before)
    assert reopened.counts() == expected_counts(stroke if after else before)
    assert len(reopened.stroke_log()) == (2 if after else 1)
    assert not any((path / "journal").iterdir())
    if after:
        assert reopened.undo() and np.array_equal(reopened.to_array(), before)


def test_undo_on_a_slice_takes_that_slices_newest_stroke(tmp_path):
    s = LabelStore.create(tmp_path / "l", SHAPE)
    s.paint(0, np.ones((4, 5), bool), 1, 0, 0)
    s.paint(1, np.ones((6, 6), bool), 2, 0, 0)
    s.paint(0, np.ones((3, 3), bool), 2, 20, 20)
    s.paint(1, np.ones((2, 2), bool), 1, 30, 30)           # the newest stroke overall is on slice 1
    assert s.undo(z=0) == {"id": 3, "z": 0, "value": 2, "pixels": 9}
    assert s.counts() == {1: 20 + 4, 2: 36}                 # slice 1 untouched
    assert s.undo(z=0)["pixels"] == 20 and s.undo(z=0) is None
    assert s.undo()["z"] == 1 and s.counts() == {1: 0, 2: 36}


def test_the_log_is_the_one_record_of_strokes_and_its_revision_only_grows(tmp_path):
    """The app reads its stroke log and its label clock from here (no second log in the database)."""
    import json

    store = LabelStore.create(tmp_path / "s", (2, 32, 32))
    mask = np.zeros((32, 32), bool)
    mask[2:4, 2:10] = True
    assert store.revision() == 0
    a = store.paint(0, mask, 1, kind="stroke")
    store.paint(1, mask, 0, kind="erase")
    store.undo(0)
    assert store.revision() == 3
    assert [(e["event"], e.get("kind"), e["id"]) for e in store.events()] == [
        ("paint", "stroke", a), ("paint", "erase", a + 1), ("undo", None, a)]
    meta_path = store.path / "meta.json"                  # a store written before the counter existed
    meta = json.loads(meta_path.read_text())
    del meta["events"]
    meta_path.write_text(json.dumps(meta))
    reopened = LabelStore.open(store.path)
    assert reopened.revision() == 3
    reopened.paint(1, mask, 2)
    assert reopened.revision() == 4


def test_redo_paints_an_undone_stroke_again_until_its_slice_is_painted(tmp_path):
    store = LabelStore.create(tmp_path / "r", (2, 32, 32))
    a, b = np.zeros((32, 32), bool), np.zeros((32, 32), bool)
    a[2:4, 2:10] = True
    b[20:22, 2:10] = True
    sid = store.paint(0, a, 2)
    store.paint(1, b, 1)
    assert store.undo(0)["id"] == sid and store.counts()[2] == 0
    assert store.redo(1) is None                                   # nothing undone on slice 1
    assert store.redo(0) == {"id": sid, "z": 0, "value": 2, "pixels": 16} and store.counts()[2] == 16
    assert store.redo(0) is None
    assert store.undo(0)["id"] == sid                               # the same record undoes it again
    store.paint(1, b, 2)                                           # a stroke elsewhere keeps slice 0's redo
    store.paint(0, b, 1)                                           # a stroke on slice 0 ends it
    assert store.redo(0) is None and store.counts()[2] == 16          # slice 1's b, now class 2
    log = store.stroke_log()
    assert [(s["id"], s["undone"]) for s in log][:1] == [(sid, True)]
    assert [e["event"] for e in store.events()].count("redo") == 1 and store.revision() == len(store.events())
