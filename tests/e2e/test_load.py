"""Many users at once, short form of ``python -m bench.load``: gunicorn with two workers, five users
scrubbing all three planes, painting and polling for a few seconds. No request may fail, every
acknowledged stroke is in the stroke log once, and two strokes painted on the same slice at the
same instant are both in the label store. Timings are printed, not asserted (docs/BENCHMARKS.md).
"""
from __future__ import annotations

import pytest

from bench.load import demo_volume, report, run_load
from tests.e2e import procs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_five_users_at_once_lose_nothing(workspace, processes, tmp_path):
    from ml.labels.store import LabelStore

    _, url = procs.start_gunicorn(workspace, tmp_path, processes.add, workers=2)
    vid, shape = demo_volume(url)
    result = run_load(url, vid, shape, clients=5, seconds=6)
    print("\n" + report(result, "short load run"))
    assert not result["errors"], result["errors"]
    assert result["acknowledged"] > 0 and result["logged"] == result["acknowledged"]
    assert result["pair_kept"] and result["pair"][0]["z"] == result["pair"][1]["z"]
    painted = {s["id"] for s in LabelStore.open(procs.labels_path(workspace)).stroke_log()}
    assert {p["stroke_id"] for p in result["pair"]} <= painted, "a same-slice stroke is missing from the store"
    assert len(painted) == result["acknowledged"], "the label store and the acknowledged strokes disagree"
