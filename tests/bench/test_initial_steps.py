"""The dev split (``Protocol.dev``) and ``bench.initial_steps`` on a toy volume."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from bench.al_protocol import TINY, load_data, pool_grid
from ml.synthetic import make_em_volume

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, shape=(4, 256, 256)) -> tuple[str, str]:
    raw, mask = make_em_volume(shape, seed=2)
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", mask * 255, photometric="minisblack")
    return str(tmp_path / "raw.tif"), str(tmp_path / "mask.tif")


def test_dev_split_keeps_the_pool_half_only(tmp_path):
    raw, labels = _write(tmp_path)
    full = load_data(raw, labels, TINY)
    dev = load_data(raw, labels, replace(TINY, dev=True))
    assert dev.image.shape == (4, 128, 256) and dev.split_y == 96
    np.testing.assert_array_equal(dev.image, full.image[:, :128])   # the same normalisation, no test-half rows
    np.testing.assert_array_equal(dev.mask, full.mask[:, :128])
    assert max(p.y + TINY.patch for p in pool_grid(dev, TINY)) <= 96   # candidates stay above the scored rows


def test_initial_steps_compares_step_counts_per_seed(tmp_path):
    raw, labels = _write(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "bench.initial_steps", "--raw", raw, "--labels", labels, "--out",
                        str(out), "--tiny", "--steps", "4,12", "--seeds", "2", "--base", "4", "--self-train",
                        "--lr", "0.002", "--batch", "3", "--ema", "0.95", "--head-steps", "2", "--anchor", "0.5", "--m", "5",
                        "--zoom", "0.2", "--balance", "0.5", "--self-rounds", "2", "--bg-share", "0.8",
                        "--self-z", "0.25", "--z-radius", "1"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {int(m[1]): m[2].split() for m in re.finditer(r"^\| (\d+) \| ([\d. ]+) \|", r.stdout, re.M)}
    assert set(rows) == {4, 12} and all(len(v) == 2 and all(0 <= float(x) <= 1 for x in v) for v in rows.values())
    draw = re.search(r"^\| the draw: [^|]+\| ([\d./ ]+) \|", r.stdout, re.M)[1].split()
    assert len(draw) == 2 and all(0 <= float(x) <= 1 for d in draw for x in d.split("/"))
    summary = json.loads((out / "summary.json").read_text())
    recipe = [summary[k] for k in ("lr", "batch", "ema", "head_steps", "anchor", "m", "zoom", "balance")]
    assert recipe == [0.002, 3, 0.95, 2, 0.5, 5, 0.2, 0.5] and summary["self_train_rounds"] == 2
    assert summary["self_train_bg_share"] == 0.8 and summary["self_train_z"] == 0.25 and summary["z_radius"] == 1
    saved = summary["models"]
    assert sorted((m["steps"], m["seed"]) for m in saved) == [(4, 0), (4, 1), (12, 0), (12, 1)]
    assert {m["patches"] for m in saved} == {5}                 # --m reached the draw
    assert {f"{m['iou']:.3f}" for m in saved} <= {x for v in rows.values() for x in v}   # the file is the table
    a = torch.load(out / "steps4" / "initial_seed0.pt", weights_only=True)
    b = torch.load(out / "steps12" / "initial_seed0.pt", weights_only=True)
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())   # each arm trained its own steps
    assert a["encoders.0.0.weight"].shape[1] == 3                                     # the models read neighbours


def test_initial_steps_says_what_is_wrong_with_its_inputs(tmp_path):
    raw, _ = _write(tmp_path)
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, np.zeros((4, 200, 256), np.uint8), photometric="minisblack")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    base = [sys.executable, "-m", "bench.initial_steps", "--raw", raw, "--out", str(tmp_path / "out"), "--tiny"]
    for extra, says in ((["--labels", str(other)], "differs from --raw shape"),
                        (["--labels", raw, "--steps", "4,many"], "comma-separated whole numbers"),
                        (["--labels", raw, "--weights", str(tmp_path / "none.pt")], "is not a file"),
                        (["--labels", raw, "--dev-train-share", "1.5"], "must lie between 0 and 1"),
                        (["--labels", raw, "--lr", "0"], "lr=0.0 is not allowed: must be a number > 0"),
                        (["--labels", raw, "--batch", "0"], "batch_size=0 is not allowed"),
                        (["--labels", raw, "--ema", "1"], "ema=1.0 is not allowed"),
                        (["--labels", raw, "--head-steps", "-5"], "head_steps=-5 is not allowed"),
                        (["--labels", raw, "--m", "0"], "1 <= --m <="),
                        (["--labels", raw, "--z-radius", "-1"], "--z-radius must be >= 0"),
                        (["--labels", raw, "--weights", raw, "--unlabeled", raw], "not both"),
                        (["--labels", raw, "--pretext", "denoise"], "--pretext needs --unlabeled"),
                        (["--labels", raw, "--self-rounds", "2"], "--self-rounds needs --self-train"),
                        (["--labels", raw, "--bg-share", "0.8"], "--bg-share needs --self-train"),
                        (["--labels", raw, "--self-z", "0.25"], "--self-z needs --self-train"),
                        (["--labels", raw, "--self-train", "--self-z", "0.5"], "z_consensus=0.5 is not allowed"),
                        (["--labels", raw, "--self-train", "--bg-share", "0"], "bg_share=0.0 is not allowed"),
                        (["--labels", raw, "--pretrain-seed", "1"], "--pretrain-seed needs --unlabeled"),
                        (["--labels", raw, "--pretrain-bf16"], "--pretrain-bf16 needs --unlabeled"),
                        (["--labels", raw, "--self-train", "--self-rounds", "0"], "rounds=0 is not allowed")):
        r = subprocess.run(base + extra, capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_dev_split_can_mirror_the_protocol_halves(tmp_path):
    raw, labels = _write(tmp_path)
    halves = load_data(raw, labels, replace(TINY, dev=True, dev_train_share=0.5))
    assert halves.image.shape == (4, 128, 256) and halves.split_y == 64   # train on rows < 64, score 64..128
    assert max(p.y + TINY.patch for p in pool_grid(halves, TINY)) <= 64
    with pytest.raises(ValueError, match="too small"):
        load_data(raw, labels, replace(TINY, dev=True, dev_train_share=0.1))   # 12 rows cannot hold a patch


def test_a_pretext_pretrains_its_own_body_the_default_keeps_the_old_file(tmp_path):
    """``--unlabeled`` pre-trains bench.al's held-out body with ``--pretext``: the denoising body is trained
    with its own settings under its own name, and the default (inpaint) body keeps the name earlier runs
    cached theirs under, so their bodies are reused; ``--pretrain-seed`` pre-trains another body of one recipe."""
    from bench.al_pretrain import PRETEXTS
    from ml.pretrain import PretrainConfig, read_info

    raw, labels = _write(tmp_path)
    unlabeled = tmp_path / "unlabeled.tif"
    tifffile.imwrite(unlabeled, make_em_volume((3, 256, 256), seed=5)[0], photometric="minisblack")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    bodies = {}
    for pretext, seed in (("denoise", 0), ("inpaint", 0), ("inpaint", 1)):
        out = tmp_path / f"{pretext}{seed}"
        r = subprocess.run([sys.executable, "-m", "bench.initial_steps", "--raw", raw, "--labels", labels, "--out",
                            str(out), "--tiny", "--steps", "4", "--seeds", "1", "--base", "4",
                            "--unlabeled", str(unlabeled), "--pretext", pretext, "--pretrain-seed", str(seed)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["pretext"] == pretext and summary["pretrain_seed"] == seed and Path(summary["weights"]).is_file()
        bodies[pretext + (f"_seed{seed}" if seed else "")] = Path(summary["weights"])
        settings = read_info(Path(summary["weights"]))["pretrain"]
        assert {k: settings[k] for k in PRETEXTS[pretext]} == PRETEXTS[pretext] and settings["seed"] == seed
        assert json.loads((out / "work" / "pretrain.json").read_text())["pretext"] == pretext
    assert bodies["inpaint"].name == "pretrained_heldout_plus-unlabeled_b4d2_3.pt"
    assert bodies["denoise"].name == "pretrained_heldout_plus-unlabeled_b4d2_denoise_3.pt"
    assert bodies.pop("inpaint_seed1").name == "pretrained_heldout_plus-unlabeled_b4d2_seed1_3.pt"
    one, other = (torch.load(tmp_path / f"inpaint{seed}" / "steps4" / "initial_seed0.pt", weights_only=True)
                  for seed in (0, 1))
    assert any(not torch.equal(one[k], other[k]) for k in one if one[k].is_floating_point())   # another body
    ratios = {name: read_info(body)["pretrain"]["mask_ratio"] for name, body in bodies.items()}
    assert ratios["denoise"] != ratios["inpaint"]
    assert read_info(bodies["inpaint"])["pretrain"]["block"] == 16     # the protocol's recipe, whatever ml's default
    for changes in PRETEXTS.values():            # every pretext is a pre-training ml.pretrain accepts, its block pinned
        assert PretrainConfig(**changes).block == changes["block"]


def test_initial_picks_the_first_patches_as_the_app_does(tmp_path):
    """``--initial kmeans`` draws the m patches by k-means on the new model's features (the app's first
    suggestions), not at random: the same seed's draw holds other patches, and the summary says how it drew."""
    raw, labels = _write(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    draws = {}
    for initial in ("random", "kmeans"):
        out = tmp_path / initial
        r = subprocess.run([sys.executable, "-m", "bench.initial_steps", "--raw", raw, "--labels", labels, "--out",
                            str(out), "--tiny", "--steps", "2", "--seeds", "1", "--base", "4", "--m", "6",
                            "--initial", initial], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["initial"] == initial
        draws[initial] = [(m["fg_share"], m["fg_pixels"]) for m in summary["models"]]
    assert draws["random"] != draws["kmeans"]
    bad = subprocess.run([sys.executable, "-m", "bench.initial_steps", "--raw", raw, "--labels", labels, "--tiny",
                          "--initial", "entropy"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "Traceback" not in bad.stderr
