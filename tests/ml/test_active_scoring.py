"""Patch scoring with a real tiny UNet2D: shapes, BALD only under MC dropout, exactness of the fast path."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from ml.mc import MCSampler, decode, encode, fast_dropout, supports_split, torch_dropout
from ml.active.pool import Patch, candidate_pool
from ml.active.scoring import _bald, pixel_scores, score_patches, volume_reader
from ml.active.strategies import select
from ml.model import UNet2D, mc_dropout
from ml.progress import Cancelled
from ml.volume import Volume


@pytest.fixture(scope="module")
def volume(synthetic_volume):
    return Volume.from_array(synthetic_volume[0], voxel_size=(40, 5, 5))


def tiny(dropout: float = 0.3, seed: int = 0) -> UNet2D:
    torch.manual_seed(seed)
    return UNet2D(base=4, depth=2, dropout=dropout)


def test_scores_have_right_shapes_and_ranges(volume):
    patches = candidate_pool(volume.shape, size=64)
    s = score_patches(tiny(), volume_reader(volume), patches, mc_passes=3, batch_size=5, device="cpu")
    n = len(patches)
    assert len(s) == n and s.patches == patches
    for arr in (s.entropy, s.least_confidence, s.margin, s.fg_fraction, s.bald):
        assert arr.shape == (n,) and np.all((arr >= 0) & (arr <= 1))
    assert s.embeddings.shape == (n, tiny().embed_dim)
    assert np.all(s.entropy > 0) and np.all(s.bald > 0)
    assert s.row(0)["bald"] == pytest.approx(s.bald[0])


def test_bald_only_with_mc_dropout(volume):
    patches = candidate_pool(volume.shape, size=64)[:4]
    assert score_patches(tiny(), volume, patches, mc_passes=0).bald is None
    no_dropout = score_patches(tiny(dropout=0.0), volume, patches, mc_passes=4)
    assert np.allclose(no_dropout.bald, 0.0, atol=1e-6)


def test_mc_scores_repeat_for_a_seed_whatever_ran_before(volume):
    """Same model and seed: same BALD, even after other random draws; the caller's RNG is untouched."""
    model, patches = tiny(), candidate_pool(volume.shape, size=64)[:6]
    first = score_patches(model, volume, patches, mc_passes=3, seed=5).bald
    torch.rand(1000)
    state = torch.get_rng_state()
    again = score_patches(model, volume, patches, mc_passes=3, seed=5).bald
    assert torch.equal(state, torch.get_rng_state())
    other = score_patches(model, volume, patches, mc_passes=3, seed=6).bald
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_deterministic_scores_match_plain_forward_and_embed(volume):
    model = tiny().eval()
    patches = [Patch(1, 0, 0, 64), Patch(2, 64, 32, 64)]
    s = score_patches(model, volume, patches, mc_passes=0)
    read = volume_reader(volume)
    x = torch.from_numpy(np.stack([read(p) for p in patches]))[:, None]
    with torch.no_grad():
        prob = torch.softmax(model(x), 1)
        emb = model.embed(x)
    ent = -(prob * prob.clamp_min(1e-12).log()).sum(1) / np.log(2)
    assert np.allclose(s.entropy, ent.mean((1, 2)).numpy(), atol=1e-5)
    assert np.allclose(s.fg_fraction, (prob.argmax(1) == 1).float().mean((1, 2)).numpy())
    assert np.allclose(s.embeddings, emb.numpy(), atol=1e-5)
    top2 = prob.topk(2, dim=1).values
    assert np.allclose((top2[:, 0] - top2[:, 1]).mean((1, 2)).numpy(), s.margin, atol=1e-5)


def test_split_decoder_equals_full_forward_under_mc_dropout():
    model = tiny(dropout=0.5)
    assert supports_split(model)
    x = torch.rand(3, 1, 40, 40)  # not a multiple of 4: padding path too
    with torch.no_grad(), mc_dropout(model):
        torch.manual_seed(7)
        full = model(x)
        torch.manual_seed(7)
        fast = decode(model, encode(model, x), torch_dropout)
    assert fast.shape == full.shape == (3, 2, 40, 40)
    assert torch.allclose(fast, full, atol=1e-5)


def test_head_scope_samples_only_the_last_layer():
    """Last-layer MC dropout: samples vary, the encoder and decoder ran once, the mean stays near eval."""
    model = tiny(dropout=0.3).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        head = MCSampler(model, x, "head")
        deep = MCSampler(model, x, "decoder")
        assert head.scope == "head" and deep.scope == "decoder"
        assert torch.allclose(head.logits, model(x), atol=1e-5) and torch.allclose(deep.logits, head.logits)
        a, b = head.sample(), head.sample()
        assert not torch.allclose(a, b)
        mean = torch.stack([head.sample() for _ in range(200)]).mean(0)
        assert torch.allclose(mean, head.logits, atol=0.1)  # inverted dropout: unbiased for a linear head
        calls = []
        hook = model.encoders[0].register_forward_hook(lambda *a: calls.append(1))
        head.sample(), deep.sample()
        hook.remove()
        assert calls == []                                  # no sample re-runs the encoder
    with pytest.raises(ValueError, match="scope"):
        MCSampler(model, x, "everything")
    no_drop = tiny(dropout=0.0).eval()
    with torch.no_grad():
        assert MCSampler(no_drop, x, "head").scope == "decoder"


def test_fast_dropout_keeps_the_right_fraction_and_scale():
    torch.manual_seed(0)
    x = torch.ones(4, 8, 64, 64).contiguous(memory_format=torch.channels_last)
    y = fast_dropout(x, 0.25)
    kept = (y > 0).float().mean().item()
    assert abs(kept - 0.75) < 0.01
    assert torch.allclose(y[y > 0], torch.tensor(1 / 0.75))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast_dropout(x, 0.0), x)


def test_bald_is_high_where_samples_disagree():
    """Patch 0: every sample says 50/50 (entropy high, no disagreement). Patch 1: samples flip."""
    samples = iter([torch.tensor([[0.0, 0.0], [s * 6.0, -s * 6.0]])[:, :, None, None].expand(2, 2, 4, 4)
                    for s in (1, -1, 1, -1)])
    bald = _bald(lambda: next(samples), 4, torch.device("cpu"), None).numpy()
    assert bald[0] == pytest.approx(0.0, abs=1e-6) and bald[1] > 0.9
    from ml.active.scores import PatchScores

    scores = PatchScores(entropy=np.array([1.0, 0.1]), least_confidence=np.zeros(2), margin=np.zeros(2),
                         fg_fraction=np.zeros(2), embeddings=np.zeros((2, 1)), bald=bald)
    assert select("bald", scores, 1)[0] == [1] and select("entropy", scores, 1)[0] == [0]


def test_top_fraction_focuses_on_most_uncertain_pixels(volume):
    patches = candidate_pool(volume.shape, size=64)[:6]
    mean = score_patches(tiny(), volume, patches, mc_passes=0)
    top = score_patches(tiny(), volume, patches, mc_passes=0, top_fraction=0.1)
    assert np.all(top.entropy >= mean.entropy - 1e-6) and np.all(top.margin <= mean.margin + 1e-6)
    with pytest.raises(ValueError, match="top_fraction"):
        score_patches(tiny(), volume, patches, top_fraction=0.0)


def test_model_state_restored_progress_and_cancel(volume):
    model = tiny().train()
    calls = []
    patches = candidate_pool(volume.shape, size=64)[:7]
    score_patches(model, volume, patches, mc_passes=1, batch_size=3, progress=lambda d, t, i: calls.append((d, t)))
    assert model.training and all(m.training for m in model.modules())
    assert next(model.parameters()).is_contiguous()
    assert calls == [(3, 7), (6, 7), (7, 7)]
    with pytest.raises(Cancelled):
        score_patches(model, volume, patches, cancel=lambda: True)
    assert model.training


def test_reader_errors_and_empty_pool(volume):
    with pytest.raises(ValueError, match="reader returned shape"):
        score_patches(tiny(), lambda p: np.zeros((5, 5), np.float32), [Patch(0, 0, 0, 64)])
    with pytest.raises(ValueError, match="share one size"):
        score_patches(tiny(), volume, [Patch(0, 0, 0, 64), Patch(0, 0, 0, 32)])
    with pytest.raises(TypeError, match="reader"):
        score_patches(tiny(), 3, [Patch(0, 0, 0, 64)])
    empty = score_patches(tiny(), volume, [], mc_passes=2)
    assert len(empty) == 0 and empty.embeddings.shape == (0, tiny().embed_dim)
    img = volume_reader(volume)(Patch(0, 0, 0, 64))
    assert img.dtype == np.float32 and img.min() >= 0 and img.max() <= 1 and img.max() > 0.5


def test_speed_base8_128px():
    """Timing on the default app geometry (printed with -s); not asserted, the machine is shared."""
    torch.manual_seed(0)
    model = UNet2D(base=8, depth=4)
    rng = np.random.default_rng(0)
    vol = Volume.from_array(rng.integers(0, 255, (2, 512, 512), dtype=np.uint8))
    patches = candidate_pool(vol.shape, size=128)
    for mc in (0, 8):
        t = time.perf_counter()
        s = score_patches(model, vol, patches, mc_passes=mc, device="cpu")
        ms = (time.perf_counter() - t) / len(patches) * 1000
        print(f"\nscore_patches base=8 128px mc_passes={mc}: {ms:.1f} ms/patch "
              f"({torch.get_num_threads()} thread(s)) = {ms:.1f} s per 1000 candidates")
        assert len(s) == len(patches)


def test_foreground_share_is_argmax_beyond_background_ties_included():
    pixels = [(0.5, 0.5, 0.0), (0.3, 0.3, 0.4), (0.4, 0.3, 0.3), (0.4, 0.4, 0.2), (0.2, 0.5, 0.3), (0.6, 0.2, 0.2)]
    prob = torch.tensor(pixels).T.reshape(1, 3, 2, 3)
    got = pixel_scores(prob)["fg_fraction"]
    assert torch.equal(got, (prob.argmax(1) != 0).float().flatten(1).mean(1))
    assert got.item() == pytest.approx(2 / 6)
    rand = torch.softmax(torch.randn(4, 2, 16, 16) * 3, 1).contiguous(memory_format=torch.channels_last)
    assert torch.equal(pixel_scores(rand)["fg_fraction"], (rand.argmax(1) != 0).float().flatten(1).mean(1))


def _disk_prob(size: int, centre: tuple[int, int], radius: float, rim_p: float) -> torch.Tensor:
    """[2, size, size] probabilities of a sure disk whose outline (1 px either side) holds p(fg) = ``rim_p``."""
    yy, xx = np.mgrid[:size, :size]
    d = np.hypot(yy - centre[0], xx - centre[1])
    p = np.where(d < radius, 0.99, 0.01)
    p[np.abs(d - radius) <= 1.0] = rim_p
    fg = torch.from_numpy(p).float()
    return torch.stack([1 - fg, fg])


def test_off_rim_ignores_doubt_on_predicted_outlines_but_not_a_doubtful_blob():
    outline = _disk_prob(32, (16, 16), 8, 0.55)                  # a sure object, blurred at its edge
    blob = _disk_prob(32, (16, 16), 8, 0.55)
    yy, xx = np.mgrid[:32, :32]
    blob[1][torch.from_numpy(np.hypot(yy - 4, xx - 26) < 3)] = 0.45   # and a faint thing away from it
    blob[0] = 1 - blob[1]
    got = pixel_scores(torch.stack([outline, blob]))
    assert got["least_confidence"][0] > 0.05                     # least confidence sees the outline ...
    assert got["off_rim"][0] < 0.011                             # ... off_rim only the 0.01 doubt left elsewhere
    assert got["off_rim"][1] > got["off_rim"][0] + 0.01          # the faint blob (p 0.45: no boundary) counts


def test_rim_band_marks_both_sides_of_a_boundary_and_not_the_patch_border():
    from ml.active.scoring import rim_band

    fg = torch.zeros(1, 12, 12, dtype=torch.bool)
    fg[0, :, 6:] = True                                          # a vertical edge between columns 5 and 6
    band = rim_band(fg, radius=2)[0]
    assert band[:, 4:8].all() and not band[:, :4].any() and not band[:, 8:].any()
    assert not rim_band(torch.ones(1, 12, 12, dtype=torch.bool), radius=2).any()


def test_score_patches_gives_off_rim_no_larger_than_least_confidence(volume):
    patches = candidate_pool(volume.shape, size=32, stride=32)[:6]
    s = score_patches(tiny(), volume_reader(volume), patches, mc_passes=0)
    assert s.off_rim.shape == (6,) and np.all(s.off_rim <= s.least_confidence + 1e-7)
    assert "off_rim" in s.row(0)
