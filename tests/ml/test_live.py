"""Live mode's core: the view prediction equals the whole-slice one, view boxes, the short fine-tune."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.dataset import FocusSampler, Region
from ml.infer import predict_image
from ml.io.normalize import normalize
from ml.live import LiveConfig, fine_tune, focus_box, input_window, predict_view, view_box
from ml.model import UNet2D
from ml.synthetic import make_em_volume


@pytest.fixture(scope="module")
def volume():
    raw, gt = make_em_volume((2, 200, 168), seed=4)
    return raw, gt


@pytest.mark.parametrize("box", [(0, 40, 0, 40), (37, 141, 55, 150), (120, 200, 100, 168), (3, 197, 1, 167)])
def test_view_prediction_equals_the_whole_slice_prediction(volume, box):
    raw, _ = volume
    torch.manual_seed(0)
    model = UNet2D(base=4, depth=3).eval()
    full = predict_image(model, normalize(raw[1], 0, 255), tile=512)["prob"]
    out = predict_view(model, raw, 1, box, 0, 255)
    y0, y1, x0, x1 = box
    assert out["prob"].shape == (2, y1 - y0, x1 - x0) and out["entropy"].shape == (y1 - y0, x1 - x0)
    assert np.abs(out["prob"] - full[:, y0:y1, x0:x1]).max() < 1e-5
    assert 0.0 <= out["entropy"].min() and out["entropy"].max() <= 1.0


def test_input_window_starts_on_the_pooling_grid():
    iy0, iy1, ix0, ix1 = input_window((100, 150, 37, 60), (400, 300), context=20, multiple=16)
    assert (iy0, ix0) == (64, 0) and iy0 % 16 == 0 and (iy1, ix1) == (182, 92)


def test_view_box_adds_margin_clips_and_caps_around_the_stroke():
    assert view_box((1024, 1024), None, margin=32, max_view=2048) == (0, 1024, 0, 1024)
    # figure x/y ranges are pixel centres +- 0.5: columns 100..299, rows 200..399 are visible
    assert view_box((1024, 1024), (99.5, 299.5, 399.5, 199.5), margin=10) == (190, 410, 90, 310)
    y0, y1, x0, x1 = view_box((1024, 1024), None, margin=0, max_view=256, centre=(10.0, 1000.0))
    assert (y1 - y0, x1 - x0) == (256, 256) and (y0, x1) == (0, 1024)
    y0, y1, x0, x1 = view_box((1024, 1024), None, margin=0, max_view=256)           # no stroke: the view's centre
    assert (y0 + y1) // 2 == 512 and (x0 + x1) // 2 == 512
    assert view_box((100, 100), (500.0, 600.0, 500.0, 600.0), margin=0) == (99, 100, 99, 100)   # off the slice


def test_focus_box_is_the_stroke_with_context_inside_the_slice():
    assert focus_box([10, 20, 90, 100], (100, 120), pad=16) == (0, 36, 74, 116)


def test_live_config_rejects_unknown_and_bad_settings():
    with pytest.raises(ValueError, match="unknown live setting"):
        LiveConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError):
        LiveConfig.from_dict({"focus": 2.0})
    assert LiveConfig.from_dict({"steps": 3}).train_config().steps == 3
    assert LiveConfig().train_config().cpu_bf16
    assert not LiveConfig.from_dict({"cpu_bf16": False}).train_config().cpu_bf16
    with pytest.raises(ValueError, match="cpu_bf16"):
        LiveConfig.from_dict({"cpu_bf16": 1})


def _regions(raw, gt):
    lab = np.zeros(gt.shape[1:], np.uint8)
    lab[20:60, 20:60] = np.where(gt[0, 20:60, 20:60] > 0, 2, 1)
    return [Region(normalize(raw[0], 0, 255), lab)]


def test_focus_sampler_puts_its_share_of_crops_on_the_focus(volume):
    raw, gt = volume
    regions = _regions(raw, gt)
    focus_img = np.full((40, 40), 0.5, np.float32)          # a constant image: its crops are recognisable
    focus = [Region(focus_img, np.full((40, 40), 2, np.uint8))]
    imgs, labs = FocusSampler(regions, focus, share=0.5, crop=32, augment=False).sample(8)
    from_focus = [bool(np.allclose(i[0][labs[k] > 0], 0.5)) for k, i in enumerate(imgs)]
    assert from_focus[:4] == [True] * 4 and not any(from_focus[4:])


def test_fine_tune_moves_weights_keeps_norm_statistics_and_respects_layers(volume):
    raw, gt = volume
    regions = _regions(raw, gt)
    torch.manual_seed(0)
    model = UNet2D(base=4, depth=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fine_tune(model, regions, [], LiveConfig(steps=0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    fine_tune(model, regions, regions, LiveConfig(steps=3, crop=32, batch_size=2, train_layers="all"))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if "running_" in k)   # BatchNorm frozen
    assert not torch.equal(before["encoders.0.0.weight"], after["encoders.0.0.weight"])
    head_only = {k: v.clone() for k, v in model.state_dict().items()}
    fine_tune(model, regions, [], LiveConfig(steps=2, crop=32, batch_size=2, train_layers="head"))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(head_only[k], v)}
    assert changed and all(k.startswith("head.") for k in changed)
    default = {k: v.clone() for k, v in model.state_dict().items()}
    fine_tune(model, regions, [], LiveConfig(steps=2, crop=32, batch_size=2))      # default: the decoder side
    changed = {k for k, v in model.state_dict().items() if not torch.equal(default[k], v)}
    assert changed and not any(k.startswith(("encoders.", "bottleneck.")) for k in changed)
    assert LiveConfig().first().train_layers == "all" and not LiveConfig().first().freeze_norm
