"""The AL benchmark end to end on a toy volume (--tiny), and its summary arithmetic."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from bench.al_protocol import TINY, BenchData, LabelState, pool_grid, random_sequence, validation_patches, with_overrides
from bench.al_report import CURVE_COLUMNS, summarize
from ml.self_training import SelfTrainConfig
from ml.synthetic import make_em_volume

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("initial, self_train, z_radius", [("random", False, 0), ("typiclust", False, 0),
                                                           ("random", True, 1)])
def test_tiny_protocol_writes_all_outputs(tmp_path, initial, self_train, z_radius):
    """Every output, for 2D models and (with self-training) for models reading a slice's neighbours too."""
    raw, mask = make_em_volume((5, 128, 128), seed=2)
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", mask * 255, photometric="minisblack")
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "bench.al", "--raw", str(tmp_path / "raw.tif"), "--labels",
                        str(tmp_path / "mask.tif"), "--out", str(out), "--tiny", "--device", "cpu", "--initial", initial]
                       + (["--self-train", "--self-z", "0.25"] if self_train else [])
                       + ["--z-radius", str(z_radius)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert list(rows[0]) == CURVE_COLUMNS
    budgets = TINY.budgets
    for strategy in TINY.strategies:
        mine = [row for row in rows if row["strategy"] == strategy]
        assert [int(row["n_labeled"]) for row in mine] == budgets
        assert all(0.0 <= float(row["iou"]) <= 1.0 for row in mine)
    assert {int(row["round"]) for row in rows if row["strategy"] == "rf_baseline"} == set(TINY.rf_rounds())
    summary = json.loads((out / "summary.json").read_text())
    for key in ("full_supervision_iou", "rf_baseline_iou_at_mid", "rf_baseline_final_iou", "protocol", "wall_time_s"):
        assert summary[key] is not None, key
    for key in ("final_iou", "iou_at_mid", "gain_vs_random_at_mid", "labels_to_match_random_final",
                "paired_gain_at_mid", "paired_gain_final"):
        assert key in summary["strategies"]["bald"], key
    assert summary["pretrain"]["mode"] == "heldout" and summary["pretrain"]["steps"] == TINY.pretrain_steps
    assert summary["protocol"]["initial"] == initial and summary["protocol"]["self_train"] == self_train
    assert (summary["self_train"] or {}).get("fg") == (SelfTrainConfig().fg if self_train else None)
    assert (summary["self_train"] or {}).get("z_consensus") == (0.25 if self_train else None)
    assert summary["protocol"]["self_train_z"] == (0.25 if self_train else 0.0)
    assert summary["protocol"]["z_radius"] == z_radius
    assert list((out / "work").glob("pretrained_heldout_*.pt"))   # every new model started from it
    assert summary["class_name"] == "mask.tif" and summary["initial_iou_sd"] is not None
    assert set(summary["targets"]) >= {"random_final", "initial_models"}
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| bald |" in r.stdout


def test_bad_input_is_a_clean_error(tmp_path):
    (tmp_path / "raw.tif").write_text("nope")
    r = subprocess.run([sys.executable, "-m", "bench.al", "--raw", str(tmp_path / "raw.tif"), "--labels",
                        str(tmp_path / "raw.tif"), "--out", str(tmp_path / "o"), "--tiny"],
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("error:")


def test_init_anchor_reaches_the_protocol_and_a_negative_one_is_refused(tmp_path):
    from bench.al import build_parser, protocol_from_args

    args = build_parser().parse_args(["--raw", "r", "--labels", "l", "--out", "o", "--quick", "--init-anchor", "0.5"])
    assert protocol_from_args(args).init_anchor == 0.5
    r = subprocess.run([sys.executable, "-m", "bench.al", "--raw", "r", "--labels", "l", "--out", str(tmp_path / "o"),
                        "--tiny", "--init-anchor", "-1"],
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "anchor" in r.stderr


def test_cpu_bf16_is_recorded_as_what_the_trainings_do():
    """``--cpu-bf16`` reaches every training of the run only where the CPU has native bf16; elsewhere the run
    records fp32, so it stays pairable with (and can reuse) fp32 runs."""
    from bench.al import build_parser, protocol_from_args
    from bench.al_protocol import Protocol
    from ml.device import native_cpu_bf16

    argv = ["--raw", "r", "--labels", "l", "--out", "o", "--quick"]
    asked = protocol_from_args(build_parser().parse_args(argv + ["--cpu-bf16"]))
    assert asked.cpu_bf16 is native_cpu_bf16()
    assert asked.init_recipe()["cpu_bf16"] is native_cpu_bf16()
    assert protocol_from_args(build_parser().parse_args(argv)).cpu_bf16 is Protocol.cpu_bf16 is False


def test_a_bf16_pretraining_gets_its_own_weights_file(tmp_path):
    """``--pretrain-bf16`` pre-trains in bf16 where the CPU has it and writes another file than fp32's, so a
    cached fp32 body is never taken for a bf16 one (nor the other way round); the default stays fp32."""
    from bench.al import build_parser, protocol_from_args
    from bench.al_pretrain import prepare
    from bench.al_protocol import Protocol
    from ml.device import native_cpu_bf16
    from ml.pretrain import read_info

    argv = ["--raw", "r", "--labels", "l", "--out", "o", "--tiny"]
    asked = protocol_from_args(build_parser().parse_args(argv + ["--pretrain-bf16"]))
    assert asked.pretrain_bf16 is native_cpu_bf16() and asked.cpu_bf16 is False   # the trainings keep theirs
    assert protocol_from_args(build_parser().parse_args(argv)).pretrain_bf16 is Protocol.pretrain_bf16 is False
    data, quiet = _data(), (lambda *a: None)
    proto = with_overrides(TINY, pretrain="transductive", pretrain_steps=2, base=4, depth=2)
    fp32, info32 = prepare(data, proto, tmp_path, log=quiet)
    bf16, info16 = prepare(data, with_overrides(proto, pretrain_bf16=True), tmp_path, log=quiet)
    assert fp32 != bf16 and bf16.endswith("_bf16_2.pt") and not info16["cached"]
    assert read_info(fp32)["precision"] == "fp32"
    assert read_info(bf16)["precision"] == ("bf16" if native_cpu_bf16() else "fp32")


@pytest.mark.parametrize("extra, says", [(["--self-z", "0.25"], "--self-z needs --self-train"),
                                         (["--self-train", "--self-z", "0.5"], "z_consensus")])
def test_a_self_z_without_self_training_or_out_of_range_is_refused(tmp_path, extra, says):
    r = subprocess.run([sys.executable, "-m", "bench.al", "--raw", "r", "--labels", "l", "--out", str(tmp_path / "o"),
                        "--tiny", *extra],
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and says in r.stderr


def _data() -> BenchData:
    raw, mask = make_em_volume((4, 128, 128), seed=5)
    return BenchData(raw.astype(np.float32) / 255, mask, 64, [1, 2])


def test_random_replay_is_nested_in_pool_half_and_avoids_validation():
    data, proto = _data(), with_overrides(TINY, rounds=3)
    seq = random_sequence(data, proto, seed=1)
    assert [len(s) for s in seq] == proto.budgets
    assert all(a == b[:len(a)] for a, b in zip(seq, seq[1:]))  # each budget extends the previous one
    assert random_sequence(data, proto, seed=1) == seq and random_sequence(data, proto, seed=2) != seq
    val = validation_patches(data, pool_grid(data, proto), proto, 1)
    state = LabelState(data, val, proto)
    for p in seq[-1]:
        assert p.y + p.size <= data.split_y and state.available(p)


def test_initial_picks_by_features_are_the_strategys_and_shared_by_the_replay():
    from ml.active import PatchScores, select

    data, proto = _data(), with_overrides(TINY, rounds=2, m=4, initial="typiclust")
    seen = []

    def embed(patches):     # the brightness of each patch: typiclust then spreads over brightness groups
        seen.append(list(patches))
        return np.array([[data.image[p.z, p.y:p.y + p.size, p.x:p.x + p.size].mean()] for p in patches])

    seq = random_sequence(data, proto, seed=1, embed=embed)
    cands = seen[0]
    zero = np.zeros(len(cands))
    want, _ = select("typiclust", PatchScores(zero, zero, zero, zero, embed(cands)), 4, seed=1)
    assert seq[0] == [cands[i] for i in want]
    assert seq[0] != random_sequence(data, with_overrides(proto, initial="random"), seed=1)[0]
    assert [len(s) for s in seq] == proto.budgets
    with pytest.raises(ValueError, match="model-free"):
        random_sequence(data, with_overrides(proto, initial="least_confidence"), seed=1, embed=embed)


def _results(curves: dict[str, list[list[float]]]) -> dict:
    """Hand-made results: curves[strategy][seed] = IoU per round of a protocol with budgets 10..50."""
    res = {"strategy": [], "rf": [], "full": [{"iou": 0.8, "miou": 0.9, "steps": 10, "n_labeled": 99, "trace": []}],
           "initial": {0: {"iou": 0.1}, 1: {"iou": 0.1}}, "wall_s": 1.0}
    for name, seeds in curves.items():
        for seed, ious in enumerate(seeds):
            rows = [dict(strategy=name, seed=seed, round=r, n_labeled=10 + 10 * r, iou=v) for r, v in enumerate(ious)]
            details = [dict(strategy=name, seed=seed, round=r, fg_share=0.5, select_s=0, train_s=0, eval_s=0)
                       for r in range(1, len(ious))]
            res["rf" if name == "rf_baseline" else "strategy"].append({"rows": rows, "details": details})
    return res


def test_summary_gains_and_labels_to_match():
    proto = with_overrides(TINY, m=10, k=10, rounds=4, strategies=("random", "bald"), seeds=2)
    res = _results({"random": [[.1, .2, .3, .4, .5], [.1, .2, .3, .4, .7]],
                    "bald": [[.1, .4, .6, .6, .7], [.1, .2, .6, .7, .8]],
                    "rf_baseline": [[.1, .1, .2, .2, .3], [.1, .1, .2, .2, .3]]})
    s = summarize(res, proto)
    bald = s["strategies"]["bald"]
    assert bald["iou_at_mid"] == pytest.approx(0.6)           # mid round 2 = 30 labels
    assert bald["gain_vs_random_at_mid"] == pytest.approx(1.0)  # 0.6 vs 0.3
    assert bald["paired_gain_final"] == {"0": pytest.approx(0.4), "1": pytest.approx(0.8 / 0.7 - 1, abs=1e-4)}
    assert bald["labels_to_match_random_final"] == pytest.approx(0.6)  # reaches 0.6 at 30 of 50
    assert s["strategies"]["random"]["labels_to_match_random_final"] == pytest.approx(1.0)
    assert s["rf_baseline_iou_at_mid"] == pytest.approx(0.2) and s["full_supervision_iou"] == 0.8
    assert s["targets"]["best_strategy"] == "bald" and s["targets"]["gain_at_mid"]["met"]
    assert s["targets"]["unet_minus_rf_at_mid"]["value"] == pytest.approx(0.1)
