"""``bench.initial_pair``: two first-model recipes compared seed by seed, only where the draws are the same."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.initial_pair import averaged, between_bodies, main, paired, read_side
from bench.saved_runs import RunError


def _summary(folder: Path, ious: dict[int, float], share: float = 0.5, draw_shift: float = 0.0,
             initial: str | None = None) -> Path:
    """A ``bench.initial_steps`` summary.json as the tool writes it (the fields initial_pair reads; ``initial``
    None: a summary from before ``--initial`` existed)."""
    folder.mkdir(parents=True)
    models = [{"steps": 1000, "kind": "initial", "seed": s, "iou": v, "iou_z": v + 0.01 * s, "miou": v, "patches": 20,
               "fg_share": 0.35 + 0.05 * s + draw_shift, "fg_pixels": 0.02 * (s + 1), "seconds": 1.0}
              for s, v in ious.items()]
    picked = {} if initial is None else {"initial": initial}
    (folder / "summary.json").write_text(json.dumps({"split": "dev", "dev_train_share": share, "base": 16, "m": 20,
                                                     "self_train": True, "models": models, **picked}))
    return folder


def test_the_paired_difference_is_per_seed_across_results_split_by_seed(tmp_path, capsys):
    base = _summary(tmp_path / "base", {0: 0.60, 1: 0.70, 2: 0.65})
    arm_a = _summary(tmp_path / "arm_a", {0: 0.64, 1: 0.66})
    arm_b = _summary(tmp_path / "arm_b", {2: 0.71})
    result = paired(read_side(str(base))[1], read_side(f"{arm_a},{arm_b}")[1])
    diffs = np.array([0.04, -0.04, 0.06])
    assert result["seeds"] == [0, 1, 2] and result["up"] == 2
    assert result["diff"] == pytest.approx(diffs.tolist())
    assert result["diff_mean"] == pytest.approx(diffs.mean())
    assert result["diff_se"] == pytest.approx(diffs.std(ddof=1) / np.sqrt(3))
    assert result["arm_sd"] == pytest.approx(np.std([0.64, 0.66, 0.71]))
    assert main([str(base), f"{arm_a},{arm_b}", "--name", "recipe"]) == 0
    out = capsys.readouterr().out
    assert "| recipe | 0.640 0.660 0.710 | 0.670 |" in out and f"**{diffs.mean():+.3f}**" in out


def test_other_draws_or_another_scoring_are_refused_with_the_reason(tmp_path, capsys):
    base = _summary(tmp_path / "base", {0: 0.60, 1: 0.70})
    other_draws = _summary(tmp_path / "draws", {0: 0.61, 1: 0.69}, draw_shift=0.05)
    other_rows = _summary(tmp_path / "rows", {0: 0.61, 1: 0.69}, share=0.75)
    with pytest.raises(RunError, match="drew other patches"):
        paired(read_side(str(base))[1], read_side(str(other_draws))[1])
    for arm, reason in ((other_rows, "scored otherwise"), (tmp_path / "nothing", "summary.json is missing")):
        with pytest.raises(SystemExit) as stop:
            main([str(base), str(arm)])
        assert stop.value.code == 2
        assert reason in capsys.readouterr().err
    with pytest.raises(RunError, match="seed 0 is in"):
        read_side(f"{base},{base}")


def test_patches_picked_otherwise_are_compared_as_the_arm(tmp_path, capsys):
    """``--initial kmeans`` draws other patches by design: the pairing is then over seeds, and says so."""
    base = _summary(tmp_path / "base", {0: 0.60, 1: 0.70}, initial="random")
    kmeans = _summary(tmp_path / "kmeans", {0: 0.30, 1: 0.66}, draw_shift=0.05, initial="kmeans")
    result = paired(read_side(str(base))[1], read_side(str(kmeans))[1])
    assert result["diff"] == pytest.approx([-0.30, -0.04])
    assert main([str(base), str(kmeans)]) == 0
    assert "patches picked random (base) against kmeans (arm)" in capsys.readouterr().out
    older = _summary(tmp_path / "older", {0: 0.61, 1: 0.69}, draw_shift=0.05)     # no "initial": random
    with pytest.raises(RunError, match="drew other patches"):
        paired(read_side(str(base))[1], read_side(str(older))[1])


def test_several_bodies_a_side_pair_their_mean_and_compare_the_bodies(tmp_path, capsys):
    base = [_summary(tmp_path / f"base{i}", {0: 0.60 + d, 1: 0.70 + d}) for i, d in enumerate((0.0, 0.02))]
    arm = [_summary(tmp_path / f"arm{i}", {0: 0.64 + d, 1: 0.70 + d, 2: 0.5}) for i, d in enumerate((0.0, 0.04))]
    base_bodies = [read_side(str(b))[1] for b in base]
    arm_bodies = [read_side(str(a))[1] for a in arm]
    result = paired(averaged(base_bodies), averaged(arm_bodies))
    assert result["seeds"] == [0, 1]                              # seed 2 is in no base body
    assert result["diff"] == pytest.approx([0.05, 0.01])          # (0.64 + 0.68) / 2 - (0.60 + 0.62) / 2, ...
    bodies = between_bodies(base_bodies, arm_bodies, result["seeds"])
    assert bodies["base"] == pytest.approx([0.65, 0.67]) and bodies["arm"] == pytest.approx([0.67, 0.71])
    assert bodies["diff"] == pytest.approx(0.03)
    assert bodies["se"] == pytest.approx(np.sqrt(np.var([0.67, 0.71], ddof=1) / 2 + np.var([0.65, 0.67], ddof=1) / 2))
    va, vb = np.var([0.67, 0.71], ddof=1) / 2, np.var([0.65, 0.67], ddof=1) / 2
    assert bodies["df"] == pytest.approx((va + vb) ** 2 / (va ** 2 + vb ** 2))   # Welch-Satterthwaite, 1 + 1 df
    assert between_bodies(base_bodies[:1], arm_bodies, [0, 1])["se"] is None
    assert main([str(base[0]), str(arm[0]), "--base-body", str(base[1]), "--arm-body", str(arm[1])]) == 0
    assert "difference +0.030, standard error from the bodies' spread 0.022 (1.5 degrees of freedom)" \
        in capsys.readouterr().out


def test_bodies_of_one_side_must_hold_the_same_draws(tmp_path, capsys):
    one = _summary(tmp_path / "one", {0: 0.60, 1: 0.70})
    other = _summary(tmp_path / "other", {0: 0.61, 1: 0.69}, draw_shift=0.05)
    with pytest.raises(RunError, match="drew other patches in two bodies"):
        averaged([read_side(str(one))[1], read_side(str(other))[1]])
    rows = _summary(tmp_path / "rows", {0: 0.61, 1: 0.69}, share=0.75)
    with pytest.raises(SystemExit) as stop:
        main([str(one), str(one), "--arm-body", str(rows)])
    assert stop.value.code == 2 and "scored otherwise" in capsys.readouterr().err


def test_the_z_consensus_reading_is_compared_when_asked_and_refused_where_missing(tmp_path, capsys):
    base = _summary(tmp_path / "base", {0: 0.60, 1: 0.70})
    arm = _summary(tmp_path / "arm", {0: 0.64, 1: 0.66})
    result = paired(read_side(str(base), metric="iou_z")[1], read_side(str(arm), metric="iou_z")[1])
    assert result["base"] == pytest.approx([0.60, 0.71]) and result["arm"] == pytest.approx([0.64, 0.67])
    assert main([str(base), str(arm), "--metric", "iou_z"]) == 0
    assert "read in z consensus" in capsys.readouterr().out
    old = tmp_path / "old"
    old.mkdir()
    summary = json.loads((base / "summary.json").read_text())
    for m in summary["models"]:
        del m["iou_z"]
    (old / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit) as stop:
        main([str(old), str(arm), "--metric", "iou_z"])
    assert stop.value.code == 2 and "has no iou_z for seed 0" in capsys.readouterr().err
