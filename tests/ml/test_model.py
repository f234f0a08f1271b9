"""UNet2D: shapes, embeddings, norms, MC dropout, channels_last, old checkpoints."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ml.model import UNet2D, mc_dropout, pad_to_multiple


def small(**kw) -> UNet2D:
    torch.manual_seed(0)
    return UNet2D(**{"base": 4, "depth": 2, **kw})


@pytest.mark.parametrize("hw", [(64, 64), (50, 37), (16, 128)])
def test_forward_shape_any_size(hw):
    m = small(n_classes=3).eval()
    out = m(torch.randn(2, 1, *hw))
    assert out.shape == (2, 3, *hw)


def test_embed_dim_is_bottleneck_width():
    m = small(base=4, depth=3)
    e = m.embed(torch.randn(5, 1, 64, 64))
    assert e.shape == (5, 4 * 2**3) == (5, m.embed_dim)


def test_default_model_is_small_and_uses_batchnorm():
    m = UNet2D()
    assert m.config["base"] == 16 and m.config["depth"] == 4 and m.config["norm"] == "batch"
    assert sum(p.numel() for p in m.parameters()) < 3_000_000
    assert any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert not any(isinstance(x, nn.GroupNorm) for x in m.modules())
    with pytest.raises(ValueError, match="norm"):
        UNet2D(norm="instance")


@pytest.mark.parametrize("norm", ["pixel", "group", "none"])
def test_other_norms_build_and_run(norm):
    m = small(norm=norm).eval()
    assert m(torch.randn(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_groupnorm_checkpoint_written_before_v2_still_loads(tmp_path):
    """Old checkpoints carry norm="group" in their config, so they rebuild as they were."""
    from ml.checkpoint import load_checkpoint, save_checkpoint

    old = small(norm="group")
    save_checkpoint(tmp_path / "old.pt", old, ["background", "mito"])
    model, info = load_checkpoint(tmp_path / "old.pt")
    assert info["config"]["norm"] == "group" and any(isinstance(x, nn.GroupNorm) for x in model.modules())
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), old.eval()(x))


def test_config_rebuilds_same_architecture():
    m = small(n_classes=3, dropout=0.2)
    m2 = UNet2D.from_config(m.config)
    m2.load_state_dict(m.state_dict())  # raises if the architecture differs
    assert m2.config == m.config


def test_eval_deterministic_mc_dropout_stochastic_and_restored():
    m = small(dropout=0.3)
    x = torch.randn(1, 1, 32, 32)
    m.eval()
    with torch.no_grad():
        a, b = m(x), m(x)
    assert torch.equal(a, b)
    m.train()
    with torch.no_grad(), mc_dropout(m):
        assert not any(x.training for x in m.modules() if isinstance(x, nn.BatchNorm2d))  # running stats
        c, d = m(x), m(x)
    assert not torch.allclose(c, d)
    assert m.training and all(x.training for x in m.modules())  # flags restored


def test_batch_independence():
    """In eval mode (running statistics) a sample's output does not depend on its batch-mates."""
    m = small().eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m(x)[:1], m(x[:1]), atol=1e-5)


def test_channels_last_matches():
    m = small().eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        ref = m(x)
        m = m.to(memory_format=torch.channels_last)
        out = m(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-5)


def test_pad_to_multiple():
    x = torch.arange(5 * 7, dtype=torch.float32).reshape(1, 1, 5, 7)
    y, hw = pad_to_multiple(x, 4)
    assert y.shape[-2:] == (8, 8) and hw == (5, 7)
    assert torch.equal(y[..., :5, :7], x)
    tiny = torch.ones(1, 1, 1, 1)
    assert pad_to_multiple(tiny, 8)[0].shape[-2:] == (8, 8)


def test_bad_input_channels_raise():
    with pytest.raises(ValueError, match="expected input"):
        small()(torch.randn(1, 3, 32, 32))
