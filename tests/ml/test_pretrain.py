"""Self-supervised pre-training: weights written atomically, resumable, loaded into new models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.dataset import regions_from_patches
from ml.active import Patch
from ml.model import UNet2D
from ml.pretrain import (PretrainConfig, PretrainError, Source, corrupt, init_from_pretrained, partial_path,
                         pretrain, read_info)
from ml.progress import Cancelled
from ml.synthetic import make_em_volume
from ml.train import TrainConfig, train

TINY = dict(batch_size=2, crop=32, block=8, save_every=3)


class CountingVolume:
    """Raw uint8 data that records how much was read per access (crops only, never a slice)."""

    def __init__(self, arr: np.ndarray):
        self.arr, self.shape, self.reads = arr, arr.shape, []

    def __getitem__(self, key):
        out = self.arr[key]
        self.reads.append(out.size)
        return out


@pytest.fixture(scope="module")
def raw():
    return make_em_volume((3, 80, 80), seed=4)[0]


def test_pretrain_writes_body_weights_that_a_new_model_starts_from(raw, tmp_path):
    vol = CountingVolume(raw)
    body = UNet2D(base=4, depth=2)
    result = pretrain(body, [Source(vol, 0, 255)], tmp_path / "enc.pt", PretrainConfig(steps=6, **TINY))
    assert result.steps == 6 and len(result.history) == 6
    losses = [h["loss"] for h in result.history]
    assert result.final_loss(4) == pytest.approx(np.mean(losses[-4:])) and result.final_loss() == pytest.approx(
        np.mean(losses))                                   # the mean of the curve's end, not the last batch alone
    assert max(vol.reads) == 32 * 32                       # one crop at a time, never a whole slice
    info = read_info(tmp_path / "enc.pt")
    assert info["complete"] and info["steps_done"] == 6 and info["config"]["base"] == 4
    assert not partial_path(tmp_path / "enc.pt").exists()
    torch.manual_seed(1)
    fresh = UNet2D(base=4, depth=2, n_classes=3)
    head_before = fresh.head.weight.detach().clone()
    init_from_pretrained(fresh, tmp_path / "enc.pt")
    assert torch.equal(fresh.encoders[0][0].weight, body.encoders[0][0].weight)
    assert torch.equal(fresh.decoders[-1][3].weight, body.decoders[-1][3].weight)
    assert torch.equal(fresh.head.weight, head_before)     # the segmentation head is not pre-trained


def test_fine_tuning_from_pretrained_weights_trains(raw, tmp_path):
    pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], tmp_path / "enc.pt", PretrainConfig(steps=4, **TINY))
    _, mask = make_em_volume((3, 80, 80), seed=4)
    regions = regions_from_patches(raw.astype(np.float32) / 255, mask, [Patch(0, 0, 0, 64), Patch(1, 16, 16, 64)],
                                   offset=1)
    model = UNet2D(base=4, depth=2)
    init_from_pretrained(model, tmp_path / "enc.pt")
    result = train(model, regions, [], TrainConfig(steps=3, batch_size=2, crop=32, eval_every=3))
    assert len(result.history) == 3 and np.isfinite(result.history[-1]["loss"])


def test_cancel_keeps_a_snapshot_and_the_next_run_resumes(raw, tmp_path):
    out = tmp_path / "enc.pt"
    calls = []
    with pytest.raises(Cancelled):
        pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], out, PretrainConfig(steps=8, **TINY),
                 cancel=lambda: len(calls) >= 5, progress=lambda d, t, i: calls.append(d))
    assert not out.exists() and partial_path(out).is_file()
    with pytest.raises(PretrainError, match="unfinished|no pre-trained"):
        init_from_pretrained(UNet2D(base=4, depth=2), partial_path(out))
    done = []
    result = pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], out, PretrainConfig(steps=8, **TINY),
                      progress=lambda d, t, i: done.append(d))
    assert done[0] == 6 and result.steps == 8              # resumed after step 5, not from 0
    assert out.is_file() and not partial_path(out).exists()


def test_a_snapshot_of_another_recipe_is_not_resumed(raw, tmp_path):
    """Only the saving cadence and the time budget may change between a run and its resumption: a
    snapshot pre-trained with other blocks starts afresh rather than mixing two recipes in one body."""
    out = tmp_path / "enc.pt"
    with pytest.raises(Cancelled):
        pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], out, PretrainConfig(steps=8, **TINY),
                 cancel=lambda: partial_path(out).exists())
    assert partial_path(out).is_file()
    done = []
    other = {**TINY, "block": 16, "save_every": 2}
    pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], out, PretrainConfig(steps=8, **other),
             progress=lambda d, t, i: done.append(d))
    assert done[0] == 1 and read_info(out)["pretrain"]["block"] == 16        # from step 0, the new recipe
    with pytest.raises(Cancelled):
        pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], tmp_path / "b.pt", PretrainConfig(steps=8, **TINY),
                 cancel=lambda: partial_path(tmp_path / "b.pt").exists())
    done.clear()
    pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], tmp_path / "b.pt",
             PretrainConfig(steps=8, **{**TINY, "save_every": 5}, max_seconds=60),
             progress=lambda d, t, i: done.append(d))
    assert done[0] == 4                                   # same recipe, another cadence and budget: resumed


def test_cpu_bf16_pretrains_in_bf16_only_where_the_cpu_has_it(raw, tmp_path):
    """On a CPU with native bf16 the body's forward pass runs in bf16 (the loss and the reconstruction in fp32),
    and the file says so; elsewhere it is fp32, step for step the same run as without the setting. A snapshot
    resumes across the setting: precision is no part of the recipe."""
    from ml.device import native_cpu_bf16

    seen = []
    body = UNet2D(base=4, depth=2)
    body.encoders[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = tmp_path / "bf16.pt"
    result = pretrain(body, [Source(raw, 0, 255)], out, PretrainConfig(steps=4, cpu_bf16=True, **TINY))
    assert all(np.isfinite(h["loss"]) for h in result.history) and len(seen) == 4
    if native_cpu_bf16():
        assert set(seen) == {torch.bfloat16} and read_info(out)["precision"] == "bf16"
    else:
        assert set(seen) == {torch.float32} and read_info(out)["precision"] == "fp32"
        fp32 = pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], tmp_path / "fp32.pt",
                        PretrainConfig(steps=4, cpu_bf16=False, **TINY))
        assert [h["loss"] for h in fp32.history] == [h["loss"] for h in result.history]
    with pytest.raises(Cancelled):
        pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], tmp_path / "r.pt",
                 PretrainConfig(steps=8, cpu_bf16=False, **TINY),
                 cancel=lambda: partial_path(tmp_path / "r.pt").exists())
    done = []
    pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], tmp_path / "r.pt", PretrainConfig(steps=8, **TINY),
             progress=lambda d, t, i: done.append(d))
    assert done[0] == 4                                   # resumed after the snapshot at step 3
    with pytest.raises(ValueError, match="cpu_bf16"):
        PretrainConfig(cpu_bf16="yes")


def test_time_budget_ends_the_run_as_complete(raw, tmp_path):
    result = pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], tmp_path / "enc.pt",
                      PretrainConfig(steps=1000, max_seconds=0.0, **TINY))
    assert result.steps == 1 and read_info(tmp_path / "enc.pt")["complete"]


def test_wrong_architecture_and_foreign_files_are_clear_errors(raw, tmp_path):
    pretrain(UNet2D(base=4, depth=2), [Source(raw, 0, 255)], tmp_path / "enc.pt", PretrainConfig(steps=1, **TINY))
    with pytest.raises(PretrainError, match="base 4 here vs 8 wanted"):
        init_from_pretrained(UNet2D(base=8, depth=2), tmp_path / "enc.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(PretrainError, match="not readable"):
        init_from_pretrained(UNet2D(base=4, depth=2), tmp_path / "junk.pt")
    with pytest.raises(PretrainError, match="no pre-trained"):
        read_info(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="no source"):
        pretrain(UNet2D(base=4, depth=2), [Source(raw[:, :20, :20], 0, 255)], tmp_path / "x.pt",
                 PretrainConfig(steps=1, **TINY))


def test_corruption_masks_blocks_and_keeps_the_target_clean():
    clean = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    img, mask = corrupt(clean, PretrainConfig(block=16, mask_ratio=0.5), np.random.default_rng(1))
    assert img.shape == clean.shape and img.dtype == np.float32
    assert 0.1 < mask.mean() < 0.9 and mask[:16, :16].all() in (True, False)
    assert mask.reshape(4, 16, 4, 16).transpose(0, 2, 1, 3).reshape(16, -1).std(1).max() == 0  # whole blocks
    assert not np.allclose(img[~mask], clean[~mask])     # visible pixels are perturbed too (denoising)


def test_arch_defaults_match_the_model_and_listing_needs_no_torch():
    import inspect
    import subprocess
    import sys

    from ml.pretrained import ARCH_DEFAULTS, ARCH_KEYS, fits

    params = inspect.signature(UNet2D.__init__).parameters
    assert {k: params[k].default for k in ARCH_KEYS} == ARCH_DEFAULTS
    assert fits({"config": UNet2D().config}, {"base": 16}) and not fits({"config": UNet2D().config}, {"base": 8})
    code = "import sys, ml.pretrained; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
