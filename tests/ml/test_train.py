"""Training on sparse labels: learns a separable task, ignores unlabeled pixels, warm start,
cancel, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.anchor import PRETRAINED_ANCHOR, start_anchor
from ml.dataset import Region
from ml.model import UNet2D
from ml.progress import Cancelled
from ml.train import TrainConfig, class_weights, evaluate, labeled_loss, train

CPU = torch.device("cpu")


def disc_region(seed: int, size: int = 96, sparse: bool = True) -> Region:
    """Bright discs (label 2) on a dark noisy background (label 1); sparse = only some rows labeled."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    fg = np.zeros((size, size), bool)
    for _ in range(4):
        cy, cx, r = rng.uniform(12, size - 12, 2).tolist() + [rng.uniform(6, 11)]
        fg |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    img = np.where(fg, 0.75, 0.25) + rng.normal(0, 0.08, fg.shape)
    labels = np.where(fg, 2, 1).astype(np.uint8)
    if sparse:
        labels[(yy % 4 != 0)] = 0
    return Region(np.clip(img, 0, 1).astype(np.float32), labels)


def tiny(seed: int = 0) -> UNet2D:
    torch.manual_seed(seed)
    return UNet2D(base=4, depth=2, dropout=0.1)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 20, "batch_size": 4, "crop": 48, "eval_every": 10, "lr": 3e-3, **kw})


@pytest.fixture(scope="module")
def data():
    return [disc_region(i) for i in range(3)], [disc_region(10, sparse=False)]


@pytest.fixture(scope="module")
def trained(data):
    tr, va = data
    calls = []
    res = train(tiny(), tr, va, cfg(steps=150, eval_every=25), progress=lambda d, t, i: calls.append((d, t, i)),
                device=CPU)
    return res, calls


def test_learns_separable_task(trained, data):
    res, calls = trained
    losses = [h["loss"] for h in res.history]
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:10])
    assert res.best_val_iou is not None and res.best_val_iou > 0.5
    assert res.best_step in {25, 50, 75, 100, 125, 150}
    # best weights restored: re-evaluating gives the recorded best score
    assert evaluate(res.model, data[1], CPU, tile=96)["val_iou"] == pytest.approx(res.best_val_iou)
    assert not res.model.training


def test_progress_every_step_with_cosine_lr(trained):
    res, calls = trained
    assert [c[0] for c in calls] == list(range(1, 151)) and all(c[1] == 150 for c in calls)
    assert {"loss", "val_iou", "lr", "eta_s"} <= set(calls[-1][2])
    lrs = [h["lr"] for h in res.history]
    assert max(lrs) == pytest.approx(3e-3, rel=0.05) and lrs[-1] < 0.1 * max(lrs)
    assert [h["step"] for h in res.history if "val_iou" in h] == [25, 50, 75, 100, 125, 150]


def test_loss_only_sees_labeled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 16, 16, requires_grad=True)
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, 4:8, 4:8] = 2
    labels[:, 10:12] = 1
    loss = labeled_loss(logits, labels, dice_weight=0.5)
    loss.backward()
    unlabeled = (labels == 0)[:, None].expand_as(logits)
    assert logits.grad[unlabeled].abs().max() == 0
    assert logits.grad[~unlabeled].abs().max() > 0
    other = logits.detach().clone()
    other[unlabeled] = torch.randn(int(unlabeled.sum())) * 10  # change what unlabeled pixels predict
    assert labeled_loss(other, labels, dice_weight=0.5) == pytest.approx(float(loss.detach()), abs=1e-6)
    # normalised by labeled count: more unlabeled area does not shrink the loss
    pad_logits = torch.cat([logits.detach(), torch.randn(2, 2, 16, 16)], dim=3)
    pad_labels = torch.cat([labels, torch.zeros_like(labels)], dim=2)
    assert labeled_loss(pad_logits, pad_labels) == pytest.approx(float(labeled_loss(logits.detach(), labels)), abs=1e-6)


def test_auto_class_weights_favour_rare_class_and_clip():
    w = class_weights({1: 9000, 2: 1000}, 2)
    assert w[1] / w[0] == pytest.approx(9.0, rel=1e-4)
    assert float((w * torch.tensor([0.9, 0.1])).sum()) == pytest.approx(1.0, rel=1e-5)
    w = class_weights({1: 100000, 2: 10}, 2, max_weight=10.0)
    assert w[1] / w[0] <= 100.0 + 1e-3  # both ends clipped to [1/10, 10]
    assert class_weights({1: 50}, 2)[1] > 0  # absent class keeps a finite weight


def test_same_seed_identical_history_other_seed_differs(data):
    tr, va = data
    a = train(tiny(), tr, va, cfg(), device=CPU)
    b = train(tiny(), tr, va, cfg(), device=CPU)
    c = train(tiny(), tr, va, cfg(seed=1), device=CPU)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_warm_start_continues_from_loaded_weights(trained, data, tmp_path):
    from ml.checkpoint import load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path / "v1.pt", trained[0].model, ["background", "mito"])
    warm_model, _ = load_checkpoint(path)
    tr, va = data
    warm = train(warm_model, tr, va, cfg(steps=10), device=CPU)
    scratch = train(tiny(), tr, va, cfg(steps=10), device=CPU)
    assert warm.history[0]["loss"] < 0.5 * scratch.history[0]["loss"]
    assert warm.best_val_iou > scratch.best_val_iou


def test_cancel_restores_best_and_raises(data):
    tr, va = data
    with pytest.raises(Cancelled) as info:
        train(tiny(), tr, va, cfg(steps=100, eval_every=3), device=CPU,
              progress=lambda d, t, i: None, cancel=_after(8))
    res = info.value.result
    assert len(res.history) == 8 and res.best_step in {3, 6}
    assert evaluate(res.model, va, CPU, tile=96)["val_iou"] == pytest.approx(res.best_val_iou or 0.0)


def _after(n: int):
    count = {"n": 0}

    def cancel() -> bool:
        count["n"] += 1
        return count["n"] > n

    return cancel


def test_auto_split_and_label_range_check(data):
    tr, _ = data
    res = train(tiny(), tr, None, cfg(steps=10, val_fraction=0.3, class_weights="auto"), device=CPU)
    assert any("val_iou" in h for h in res.history)
    bad = [Region(np.zeros((32, 32)), np.full((32, 32), 3, np.uint8))]
    with pytest.raises(ValueError, match="classes"):
        train(tiny(), bad, [], cfg(), device=CPU)


def test_auto_weights_use_crop_frequencies(data):
    from ml.train import crop_label_counts

    region = Region(np.zeros((200, 200), np.float32), np.ones((200, 200), np.uint8))
    region.labels[90:100, 90:100] = 2  # 0.25 % of labeled pixels
    counts = crop_label_counts([region], cfg(crop=32))
    assert counts[2] / (counts[1] + counts[2]) > 0.02  # balanced centres: far above the raw 0.25 %


def test_weight_average_follows_the_ramped_decay():
    from ml.train import WeightAverage

    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    avg = WeightAverage(model, decay=0.9)
    expected = 0.0
    for n, value in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        avg.update(model)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * value
    assert avg.shadow["weight"].item() == pytest.approx(expected)
    with avg.applied(model):
        assert model.weight.item() == pytest.approx(expected)
    assert model.weight.item() == 4.0          # training weights back after the block


def test_ema_model_is_the_average_and_is_what_validation_scores(data):
    tr, va = data
    last = train(tiny(), tr, [], cfg(steps=30, ema=0.0), device=CPU)
    averaged = train(tiny(), tr, [], cfg(steps=30, ema=0.9), device=CPU)
    # same steps, same seed: the loss history is identical, only the returned weights differ
    assert [h["loss"] for h in last.history] == [h["loss"] for h in averaged.history]
    assert any(not torch.equal(p, q) for p, q in zip(last.model.parameters(), averaged.model.parameters()))
    scored = train(tiny(), tr, va, cfg(steps=30, eval_every=10, ema=0.9), device=CPU)
    assert evaluate(scored.model, va, CPU, tile=96)["val_iou"] == pytest.approx(scored.best_val_iou)
    with pytest.raises(ValueError, match="ema"):
        cfg(ema=1.0)


def test_head_phase_fits_the_head_before_the_whole_network(data):
    tr, _ = data
    plain = train(tiny(), tr, [], cfg(steps=5, ema=0.0, lr=1e-2), device=CPU)
    probed = train(tiny(), tr, [], cfg(steps=5, ema=0.0, head_steps=40, lr=1e-2), device=CPU)
    # the linear probe has already lowered the loss when the whole network's first step runs
    assert probed.history[0]["loss"] < 0.9 * plain.history[0]["loss"]
    assert len(probed.history) == 5 and all(p.requires_grad for p in probed.model.parameters())
    with pytest.raises(ValueError, match="head_steps"):
        cfg(head_steps=-1)


def test_anchor_holds_the_body_at_its_start_and_frees_the_head(data):
    tr, _ = data
    model = tiny()
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    held = train(model, tr, [], cfg(steps=5, ema=0.0, anchor=1e6), device=CPU).model    # lr * anchor >= 1: fully held
    moved = {k for k, v in held.named_parameters() if not torch.equal(v.detach(), start[k])}
    assert moved and all(k.startswith("head.") for k in moved)
    loose = train(tiny(), tr, [], cfg(steps=5, ema=0.0, anchor=10.0), device=CPU).model
    free = train(tiny(), tr, [], cfg(steps=5, ema=0.0), device=CPU).model
    dist = [sum(float((p - start[k]).norm()) for k, p in m.named_parameters() if not k.startswith("head."))
            for m in (loose, free)]
    assert dist[0] < dist[1]       # a partial pull: the body moves, but less far
    with pytest.raises(ValueError, match="anchor"):
        cfg(anchor=-1.0)


@pytest.mark.parametrize("setting, value", [("zoom", 0.5), ("balance", 0.0)])
def test_a_crop_setting_reaches_the_training_crops(data, setting, value):
    tr, _ = data
    plain = train(tiny(), tr, [], cfg(steps=3, ema=0.0), device=CPU)
    changed = train(tiny(), tr, [], cfg(steps=3, ema=0.0, **{setting: value}), device=CPU)
    assert [h["loss"] for h in plain.history] != [h["loss"] for h in changed.history]
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=setting):
            cfg(**{setting: bad})


def test_only_a_self_training_run_from_a_pre_trained_body_is_pulled():
    assert start_anchor(from_pretrained=True, self_trains=True) == PRETRAINED_ANCHOR > 0
    for start, selfed in ((True, False), (False, True), (False, False)):   # strokes, scratch or a warm start
        assert start_anchor(from_pretrained=start, self_trains=selfed) == 0.0


def test_cpu_bf16_trains_in_bf16_only_where_the_cpu_has_it(data):
    """``cpu_bf16`` runs the forward pass under bf16 autocast on a CPU with native bf16 (and still learns),
    and is a no-op elsewhere (emulated bf16 is 20x slower): the same history as fp32."""
    from ml.device import native_cpu_bf16

    tr, va = data
    seen = []
    model = tiny()
    model.register_forward_hook(lambda m, i, o: seen.append((torch.is_autocast_enabled("cpu"), o.dtype)))
    res = train(model, tr, [], cfg(steps=60, cpu_bf16=True), device=CPU)
    train_seen = seen[:60]
    if native_cpu_bf16():
        assert all(on and dtype == torch.bfloat16 for on, dtype in train_seen)
        losses = [h["loss"] for h in res.history]
        assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    else:
        assert not any(on for on, _ in train_seen)
        fp32 = train(tiny(), tr, [], cfg(steps=60, cpu_bf16=False), device=CPU)
        assert [h["loss"] for h in res.history] == [h["loss"] for h in fp32.history]
    assert evaluate(res.model, va, CPU)["val_iou"] > 0.3
