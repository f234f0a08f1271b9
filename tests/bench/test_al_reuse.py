"""``bench.al --reuse`` (an earlier run's initial models and rows taken, not trained again) and ``bench.al_pool``."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile

from bench.al_protocol import TINY, with_overrides
from bench.al_reuse import protocol_mismatch
from ml.synthetic import make_em_volume

ROOT = Path(__file__).resolve().parents[2]


def _al(tmp_path: Path, out: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "bench.al", "--raw", str(tmp_path / "raw.tif"), "--labels",
                           str(tmp_path / "mask.tif"), "--out", str(tmp_path / out), "--tiny", "--device", "cpu",
                           "--full-seeds", "0", *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)


def _rows(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "curves.csv").open()))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    """A tiny volume and one finished run of random on seed 0 (``a``)."""
    tmp_path = tmp_path_factory.mktemp("al")
    raw, mask = make_em_volume((5, 128, 128), seed=2)
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", mask * 255, photometric="minisblack")
    first = _al(tmp_path, "a", "--strategies", "random")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "initial model IoU" in first.stdout
    return tmp_path


def test_a_reusing_run_trains_only_the_new_strategy_and_keeps_the_old_rows(first_run):
    tmp_path = first_run
    second = _al(tmp_path, "b", "--strategies", "least_confidence", "--reuse", str(tmp_path / "a"))
    assert second.returncode == 0, second.stderr[-2000:]
    assert "reused from" in second.stdout
    assert "initial model IoU" not in second.stdout and "RF IoU" not in second.stdout   # nothing retrained
    assert "seed 0 least_confidence" in second.stdout and "seed 0 random" not in second.stdout
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert [r for r in b if r["strategy"] != "least_confidence"] == a       # random and RF rows, as written
    assert len([r for r in b if r["strategy"] == "least_confidence"]) == TINY.rounds + 1
    assert ((tmp_path / "b/work/initial_seed0.pt").read_bytes() == (tmp_path / "a/work/initial_seed0.pt").read_bytes())
    summary = json.loads((tmp_path / "b/summary.json").read_text())
    assert summary["reused_from"] == str(tmp_path / "a")
    old = json.loads((tmp_path / "a/summary.json").read_text())
    new_random, old_random = summary["strategies"]["random"], old["strategies"]["random"]
    assert {k: new_random[k] for k in ("final_iou", "iou_at_mid", "mean_curve", "mito_patch_share")} == \
        {k: old_random[k] for k in ("final_iou", "iou_at_mid", "mean_curve", "mito_patch_share")}
    assert new_random["final_miou_2class"] == pytest.approx(old_random["final_miou_2class"], abs=1e-5)  # csv: 5 places
    assert summary["initial_iou"] == old["initial_iou"]
    assert summary["strategies"]["least_confidence"]["final_iou"] is not None
    other = _al(tmp_path, "c", "--strategies", "least_confidence", "--reuse", str(tmp_path / "a"), "--m", "4")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "another protocol" in other.stderr and "m 3 there, 4 here" in other.stderr
    missing = _al(tmp_path, "d", "--reuse", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "summary.json is missing" in missing.stderr


def test_another_scoring_retrains_every_scoring_strategy_and_reuses_random(first_run):
    tmp_path = first_run
    plain = _al(tmp_path, "lc", "--strategies", "least_confidence", "--reuse", str(tmp_path / "a"))
    assert plain.returncode == 0, plain.stderr[-2000:]
    mixed = _al(tmp_path, "lcz", "--strategies", "least_confidence", "--score-z", "0.25",
                "--reuse", str(tmp_path / "lc"))
    assert mixed.returncode == 0, mixed.stderr[-2000:]
    assert "seed 0 least_confidence" in mixed.stdout and "seed 0 random" not in mixed.stdout  # scored again
    assert "initial model IoU" not in mixed.stdout
    lc, lcz = _rows(tmp_path / "lc"), _rows(tmp_path / "lcz")
    kept = [r for r in lc if r["strategy"] != "least_confidence"]                 # random's and the RF's rows
    assert [r for r in lcz if r["strategy"] != "least_confidence"] == kept
    assert json.loads((tmp_path / "lcz/summary.json").read_text())["protocol"]["score_z"] == 0.25
    bad = _al(tmp_path, "bad", "--score-z", "0.5")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "[0, 0.5)" in bad.stderr


def test_another_round_training_reuses_the_initial_models_alone(first_run):
    tmp_path = first_run
    longer = _al(tmp_path, "long", "--strategies", "random", "--round-steps", str(2 * TINY.round_steps),
                 "--reuse", str(tmp_path / "a"))
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert "seed 0 random" in longer.stdout                                        # random trained again
    assert "initial model IoU" not in longer.stdout and "RF IoU" not in longer.stdout
    a, long = _rows(tmp_path / "a"), _rows(tmp_path / "long")
    assert [r for r in long if r["strategy"] == "rf_baseline"] == [r for r in a if r["strategy"] == "rf_baseline"]
    new, old = ([r for r in rows if r["strategy"] == "random"] for rows in (long, a))
    assert new[0] == old[0] and len(new) == TINY.rounds + 1      # round 0 is the initial model, the same
    summary = json.loads((tmp_path / "long/summary.json").read_text())
    assert summary["protocol"]["round_steps"] == 2 * TINY.round_steps


def test_a_field_added_since_an_old_run_matches_only_at_its_default():
    old = TINY.to_dict()
    del old["zoom"]                                     # a run recorded before the zoom setting existed
    assert protocol_mismatch(old, TINY) == []
    assert protocol_mismatch(old, with_overrides(TINY, zoom=0.25)) == ["zoom 0.0 there, 0.25 here"]
    assert protocol_mismatch(old, with_overrides(TINY, strategies=("random", "balanced"), workers=1)) == []


def test_pooled_runs_give_one_table_over_their_seeds_and_refuse_repeats(first_run, capsys):
    from bench.al_pool import main, pool

    tmp_path = first_run
    more = _al(tmp_path, "e", "--strategies", "random", "--first-seed", "1")
    assert more.returncode == 0, more.stderr[-2000:]
    results, proto = pool([tmp_path / "a", tmp_path / "e"])
    assert sorted(results["initial"]) == [0, 1] and proto.seed_range == range(0, 2)
    assert sorted(r["seed"] for r in results["strategy"]) == [0, 1] and proto.strategies == ("random",)
    out = tmp_path / "pooled.json"
    assert main([str(tmp_path / "a"), str(tmp_path / "e"), "--out", str(out)]) == 0
    pooled = json.loads(out.read_text())
    runs = [json.loads((tmp_path / r / "summary.json").read_text()) for r in ("a", "e")]
    assert pooled["initial_iou"] == {**runs[0]["initial_iou"], **runs[1]["initial_iou"]}
    final = pooled["strategies"]["random"]["final_iou"]
    assert final == pytest.approx(sum(r["strategies"]["random"]["final_iou"] for r in runs) / 2, abs=1e-5)
    for r in ("a", "e"):                                 # a run's summary and curves alone, as docs keeps them
        (tmp_path / f"saved_{r}").mkdir()
        for name in ("summary.json", "curves.csv"):
            (tmp_path / f"saved_{r}" / name).write_bytes((tmp_path / r / name).read_bytes())
    saved, _ = pool([tmp_path / "saved_a", tmp_path / "saved_e"])
    assert saved["initial"] == results["initial"]
    assert [r["rows"] for r in saved["strategy"]] == [r["rows"] for r in results["strategy"]]
    from bench.al_report import summarize

    assert summarize(results, proto)["strategies"]["random"]["mito_patch_share"] is not None
    part, part_proto = pool([tmp_path / "saved_a", tmp_path / "e"])      # one run's details only: no share
    assert summarize(part, part_proto)["strategies"]["random"]["mito_patch_share"] is None
    mixed = pooled["z_consensus"]                        # the app's reading, pooled the same way
    assert mixed["initial_iou"] == {**runs[0]["z_consensus"]["initial_iou"], **runs[1]["z_consensus"]["initial_iou"]}
    assert mixed["strategies"]["random"]["final_iou"] == pytest.approx(
        sum(r["z_consensus"]["strategies"]["random"]["final_iou"] for r in runs) / 2, abs=1e-5)
    printed = capsys.readouterr().out
    assert printed.count("| random |") == 2 and "with the z consensus" in printed
    with pytest.raises(ValueError, match="repeats seeds"):
        pool([tmp_path / "a", tmp_path / "a"])
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a"), str(tmp_path / "nowhere")])
