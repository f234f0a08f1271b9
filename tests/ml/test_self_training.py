"""Self-training: confident pixels only, bounded windows, held-out labels left alone, and it trains."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.dataset import Region
from ml.live import predict_view
from ml.model import UNet2D
from ml.self_training import (SelfTrainConfig, background_threshold, pseudo_labels, pseudo_regions, round_steps,
                              self_train, train_in_phases, window_boxes, window_probs)
from ml.synthetic import make_em_volume
from ml.train import TrainConfig


def test_pseudo_labels_keep_only_confident_pixels_with_a_stricter_background():
    prob = np.array([[[0.995, 0.95, 0.05, 0.5]], [[0.005, 0.05, 0.95, 0.5]]], np.float32)   # (C=2, 1, 4)
    assert pseudo_labels(prob, fg=0.9, bg=0.99).tolist() == [[1, 0, 2, 0]]


def test_pseudo_labels_of_three_classes():
    prob = np.array([[[0.995, 0.02]], [[0.004, 0.95]], [[0.001, 0.03]]], np.float32)
    assert pseudo_labels(prob, fg=0.9, bg=0.99).tolist() == [[1, 2]]


def test_window_boxes_stay_within_the_pixel_budget_and_rows_and_do_not_overlap():
    cfg = SelfTrainConfig(window=64, max_pixels=10 * 64 * 64)
    boxes = window_boxes((5, 300, 200), cfg, seed=1, rows=(0, 150))
    assert sum((y1 - y0) * (x1 - x0) for _, (y0, y1, x0, x1) in boxes) <= cfg.max_pixels
    assert len(boxes) >= 8 and all(0 <= y0 < y1 <= 150 for _, (y0, y1, _, _) in boxes)
    cover = np.zeros((5, 300, 200), np.int32)
    for z, (y0, y1, x0, x1) in boxes:
        cover[z, y0:y1, x0:x1] += 1
    assert cover.max() == 1
    assert len({z for z, _ in boxes}) >= 3                               # spread over the volume
    assert window_boxes((5, 300, 200), cfg, seed=1, rows=(0, 150)) == boxes
    assert window_boxes((5, 300, 200), cfg, seed=2, rows=(0, 150)) != boxes
    whole = window_boxes((2, 100, 100), SelfTrainConfig(window=64, max_pixels=2**20))
    assert sum((y1 - y0) * (x1 - x0) for _, (y0, y1, x0, x1) in whole) == 2 * 100 * 100


def test_with_a_z_consensus_windows_come_in_runs_of_slices_so_a_window_costs_fewer_predictions():
    shape = (60, 512, 512)
    alone = window_boxes(shape, SelfTrainConfig(window=64, max_pixels=32 * 64 * 64), seed=3)
    runs = window_boxes(shape, SelfTrainConfig(window=64, max_pixels=32 * 64 * 64, z_consensus=0.25), seed=3)

    def predictions(boxes):
        calls = []
        list(window_probs(lambda z, box: calls.append((z, box)) or np.zeros((2, 1, 1), np.float32), boxes, 60, 0.25))
        return len(calls)
    assert len(runs) == len(alone) == 32 and len(set(runs)) == 32
    assert predictions(runs) <= 1.5 * len(runs) < 2.5 * len(alone) <= predictions(alone)
    for z, box in runs:                                  # every window has a neighbour of its own run
        assert (z - 1, box) in runs or (z + 1, box) in runs
    assert len({box for _, box in runs}) >= 6            # still spread over the slices' area


def test_the_background_threshold_keeps_the_surest_share_of_the_pixels_predicted_background():
    p_bg = np.array([[0.2, 0.991, 0.992, 0.993, 0.994, 0.995, 0.996, 0.997, 0.998, 0.999, 0.9995]], np.float32)
    prob = np.stack([p_bg, 1 - p_bg])                       # (C=2, 1, 11): the first pixel is predicted mitochondria
    assert background_threshold([prob], SelfTrainConfig()) == 0.99                        # the default: all above bg
    cut = background_threshold([prob[:, :, :6], prob[:, :, 6:]], SelfTrainConfig(bg_share=0.5))   # over all windows
    assert 0.995 <= cut < 0.996
    assert pseudo_labels(prob, 0.7, cut).tolist() == [[2, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]]   # the surest half of ten
    low = np.stack([np.full((1, 4), 0.6, np.float32), np.full((1, 4), 0.4, np.float32)])
    assert background_threshold([low], SelfTrainConfig(bg_share=0.5)) == 0.99       # never below bg
    assert background_threshold([], SelfTrainConfig(bg_share=0.5)) == 0.99


def test_pseudo_regions_rank_background_over_every_window(volume):
    raw, _ = volume
    torch.manual_seed(0)
    model = UNet2D(base=4, depth=2).eval()
    cfg = SelfTrainConfig(fg=0.5, bg=0.5, window=48, max_pixels=2**20)
    boxes = window_boxes(raw.shape, cfg)
    every = pseudo_regions(model, raw, 0, 255, boxes, cfg)
    half = pseudo_regions(model, raw, 0, 255, boxes, SelfTrainConfig(fg=0.5, bg=0.5, bg_share=0.5, window=48,
                                                                         max_pixels=2**20))
    n_bg = [sum(int((r.labels == 1).sum()) for r in rs) for rs in (every, half)]
    assert abs(n_bg[1] - n_bg[0] / 2) <= 1                           # half of all the background, not of each window
    assert all(((b.labels == 2) == (a.labels == 2)).all() for a, b in zip(every, half))     # objects untouched
    assert all(set(np.unique(b.labels[a.labels == 1])) <= {0, 1} for a, b in zip(every, half))


def test_window_probs_mix_each_window_with_its_neighbours_predicting_each_slice_once():
    from ml.z_consensus import smooth_z

    rng = np.random.default_rng(0)
    fg = rng.random((5, 2, 8, 8)).astype(np.float32)         # (z, box, y, x): two boxes of a 5-slice volume
    boxes = [(z, (0, 8, 8 * b, 8 * b + 8)) for z in (0, 1, 2, 4) for b in (0, 1)]
    calls = []

    def predict(z, box):
        calls.append((z, box))
        p = fg[z, box[2] // 8]
        return np.stack([1 - p, p])
    got = {(z, box): prob for z, box, prob in window_probs(predict, boxes, 5, 0.25)}
    whole = smooth_z(np.stack([1 - fg, fg]), 0.25, axis=1)    # (C, z, box, y, x)
    assert set(got) == set(boxes)
    for (z, box), prob in got.items():
        assert np.allclose(prob, whole[:, z, box[2] // 8])
    assert len(calls) == len(set(calls)) == 10               # slice 3 read for slice 4's sake, each slice once
    assert [(z, b) for z, b, _ in window_probs(predict, boxes, 5, 0.0)] == boxes    # off: the windows as given


def test_pseudo_regions_label_the_consensus_when_asked(volume):
    raw, _ = volume
    torch.manual_seed(0)
    model = UNet2D(base=4, depth=2).eval()
    with torch.no_grad():
        model.head.weight.mul_(300.0)
    cfg = SelfTrainConfig(fg=0.5, bg=0.5, window=96, max_pixels=2**20, z_consensus=0.25)
    boxes = window_boxes(raw.shape, cfg)
    regions = pseudo_regions(model, raw, 0, 255, boxes, cfg)
    views = np.stack([predict_view(model, raw, z, box, 0, 255)["prob"] for z, box in boxes], axis=1)
    mixed = 0.75 * views + 0.25 * views[:, ::-1]             # two slices: each is the other's only neighbour
    assert [(r.z, (r.y0, r.y0 + 96, r.x0, r.x0 + 96)) for r in regions] == boxes
    for k, r in enumerate(regions):
        assert (r.labels == pseudo_labels(mixed[:, k], 0.5, 0.5)).all()
    alone = pseudo_regions(model, raw, 0, 255, boxes, SelfTrainConfig(fg=0.5, bg=0.5, window=96, max_pixels=2**20))
    assert any((a.labels != r.labels).any() for a, r in zip(alone, regions))


def test_self_train_config_rejects_nonsense():
    for bad in ({"fg": 0.3}, {"bg": 1.0}, {"share": 0.0}, {"window": 4}, {"bg_share": 0.0}, {"bg_share": 1.5},
                {"z_consensus": 0.5}, {"z_consensus": -0.1}):
        with pytest.raises(ValueError):
            SelfTrainConfig(**bad)


@pytest.fixture(scope="module")
def volume():
    return make_em_volume((2, 96, 96), seed=3)


def test_pseudo_regions_follow_the_view_prediction_and_spare_held_out_labels(volume):
    raw, _ = volume
    torch.manual_seed(0)
    model = UNet2D(base=4, depth=2).eval()
    cfg = SelfTrainConfig(fg=0.5, bg=0.5, window=64, max_pixels=2**20)       # every pixel: one class wins
    boxes = window_boxes(raw.shape, cfg)
    held = Region(np.zeros((10, 12), np.float32), np.ones((10, 12), np.uint8), z=1, y0=60, x0=50)
    regions = pseudo_regions(model, raw, 0, 255, boxes, cfg, held_out=[held])
    assert len(regions) == len(boxes)
    for (z, box), r in zip(boxes, regions):
        y0, y1, x0, x1 = box
        expected = pseudo_labels(predict_view(model, raw, z, box, 0, 255)["prob"], 0.5, 0.5)
        inside = np.zeros_like(expected, bool)
        if z == 1:
            inside[max(0, 60 - y0):max(0, 70 - y0), max(0, 50 - x0):max(0, 62 - x0)] = True
        assert (r.labels[~inside] == expected[~inside]).all() and (r.labels[inside] == 0).all()
        assert (r.z, r.y0, r.x0) == (z, y0, x0) and 0 <= r.image.min() and r.image.max() <= 1
    assert sum(int((r.labels == 0).sum()) for r in regions) == 10 * 12          # only the held-out pixels


def test_pseudo_labels_never_sit_on_a_true_label(volume):
    """Known labels keep their pixels (e.g. imported dense labels); the unlabeled pixels around them are fair game."""
    raw, _ = volume
    torch.manual_seed(0)
    model = UNet2D(base=4, depth=2).eval()
    cfg = SelfTrainConfig(fg=0.5, bg=0.5, window=96, max_pixels=2**20)
    lab = np.zeros((20, 20), np.uint8)
    lab[5:15, 5:15] = 2
    known = Region(np.zeros((20, 20), np.float32), lab, z=0, y0=30, x0=40)
    (r0, _), = [(r, b) for r, b in zip(pseudo_regions(model, raw, 0, 255, window_boxes(raw.shape, cfg), cfg,
                                                      known=[known]), window_boxes(raw.shape, cfg)) if b[0] == 0]
    assert (r0.labels[35:45, 45:55] == 0).all()                    # the labeled pixels
    assert (r0.labels[30:35, 40:60] > 0).all()                      # the unlabeled rim of the same region


def test_self_train_learns_a_class_only_the_pseudo_labels_show(volume):
    """True labels hold background only in one corner; pseudo-labels say 'object' on a bright square."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 0.3, (64, 64)).astype(np.float32)
    image[20:44, 20:44] += 0.6
    truth = np.zeros((64, 64), np.uint8)
    truth[:12, :12] = 1
    pseudo = np.zeros((64, 64), np.uint8)
    pseudo[22:42, 22:42] = 2
    pseudo[50:, 50:] = 1
    torch.manual_seed(0)
    model = UNet2D(base=4, depth=2)
    tcfg = TrainConfig(steps=60, lr=5e-3, batch_size=4, crop=32, seed=0, eval_every=60)
    result = self_train(model, [Region(image, truth)], [Region(image, pseudo), Region(image, np.zeros_like(pseudo))],
                        [], tcfg, SelfTrainConfig())
    assert len(result.history) == 60 and np.isfinite(result.history[-1]["loss"])
    with torch.no_grad():
        p = torch.softmax(model.eval()(torch.from_numpy(image)[None, None]), 1)[0, 1].numpy()
    assert p[26:38, 26:38].mean() > 0.6 and p[:12, :12].mean() < 0.4


def _toy():
    rng = np.random.default_rng(1)
    image = rng.uniform(0.0, 0.3, (48, 48)).astype(np.float32)
    image[12:36, 12:36] += 0.6
    labels = np.zeros((48, 48), np.uint8)
    labels[:8, :8], labels[20:28, 20:28] = 1, 2
    return Region(image, labels)


@pytest.mark.parametrize("self_steps", [0, 4, 10])
def test_train_in_phases_runs_every_step_once_and_pseudo_labels_after_the_supervised_phase(self_steps):
    region = _toy()
    calls, seen = [], []
    torch.manual_seed(0)
    model = UNet2D(base=4, depth=2)
    tcfg = TrainConfig(steps=10, lr=1e-3, batch_size=2, crop=32, seed=0, eval_every=5)

    def pseudo(m):
        calls.append(len(seen))                       # how many steps had run when the pool was labeled
        return [Region(region.image, np.where(region.labels == 0, 1, 0).astype(np.uint8))]

    result = train_in_phases(model, [region], [], tcfg, SelfTrainConfig(), self_steps, pseudo,
                             progress=lambda done, total, info=None: seen.append((done, total, (info or {}).get("phase"))))
    steps = [d for d, _, ph in seen if ph in ("training", "self-training")]
    assert steps == list(range(1, 11)) and all(t == 10 for _, t, _ in seen)
    assert [h["step"] for h in result.history] == list(range(1, 11))
    assert calls == ([] if self_steps == 0 else [10 - self_steps + 1])     # + the "pseudo-labeling" report
    phases = [ph for _, _, ph in seen if ph in ("training", "self-training")]
    assert phases.count("self-training") == self_steps


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


@pytest.mark.parametrize("self_steps", [0, 4, 10])
def test_the_result_keeps_the_model_the_labels_alone_made(self_steps):
    """The quality estimate reads the supervised phase's model (bench.quality v5): the result must hold that
    model as it was when the pool was first labeled, not the self-trained one; with no supervised phase
    (a warm start) or no self-training there is only the final model."""
    region, at_boundary = _toy(), []
    torch.manual_seed(0)
    tcfg = TrainConfig(steps=10, lr=1e-3, batch_size=2, crop=32, seed=0, eval_every=5)

    def pseudo(m):
        at_boundary.append(_flat(m))
        return [Region(region.image, np.where(region.labels == 0, 1, 0).astype(np.uint8))]

    result = train_in_phases(UNet2D(base=4, depth=2), [region], [], tcfg, SelfTrainConfig(), self_steps, pseudo)
    if self_steps in (0, 10):
        assert result.supervised is None and result.labels_only is result.model
        return
    assert result.labels_only is result.supervised and result.supervised is not result.model
    assert torch.equal(_flat(result.supervised), at_boundary[0])
    assert not torch.equal(_flat(result.model), at_boundary[0])      # self-training moved the final model
    assert not result.supervised.training


def test_self_steps_split_a_new_model_and_cover_a_warm_start():
    cfg = SelfTrainConfig()
    assert cfg.self_steps(1500, warm=False) == 500 and cfg.self_steps(300, warm=True) == 300
    assert cfg.self_steps(300, warm=False) == 0            # 200 supervised steps: too weak to teach itself
    assert cfg.self_steps(750, warm=False) == 250          # 500: just enough (cfg.min_steps)
    assert SelfTrainConfig(min_steps=0).self_steps(300, warm=False) == 100
    # strokes (labels that do not fill their patches): where a model learned its own mistakes
    assert cfg.self_steps(1500, warm=False, dense_share=0.3) == 0 == cfg.self_steps(300, warm=True, dense_share=0.3)
    assert cfg.self_steps(1500, warm=False, dense_share=0.5) == 500
    assert SelfTrainConfig(enabled=False).self_steps(300, warm=True) == 0
    assert SelfTrainConfig.from_dict({"fg": 0.95}).fg == 0.95
    with pytest.raises(ValueError, match="unknown self-training setting"):
        SelfTrainConfig.from_dict({"treshold": 0.9})


@pytest.mark.parametrize("self_steps, stop_at, kept", [(4, "pseudo", 6), (4, 8, 8), (10, "pseudo", None)])
def test_a_cancel_keeps_what_was_trained(self_steps, stop_at, kept):
    """Stopped while pseudo-labeling or self-training: the result holds every finished step (none for a
    warm start stopped before its first)."""
    from ml.progress import Cancelled, check_cancel

    region = _toy()
    state = {"step": 0, "pseudo": False}

    def cancel() -> bool:
        return state["pseudo"] if stop_at == "pseudo" else state["step"] >= stop_at

    def pseudo(m):
        state["pseudo"] = True
        check_cancel(cancel)                        # as pseudo_regions checks before each window
        return [region]

    torch.manual_seed(0)
    tcfg = TrainConfig(steps=10, lr=1e-3, batch_size=2, crop=32, seed=0, eval_every=5)
    with pytest.raises(Cancelled) as err:
        train_in_phases(UNet2D(base=4, depth=2), [region], [], tcfg, SelfTrainConfig(), self_steps, pseudo,
                        progress=lambda done, total, info=None: state.update(step=done), cancel=cancel)
    result = getattr(err.value, "result", None)
    assert (None if result is None else len(result.history)) == kept
    if result is not None:
        assert [h["step"] for h in result.history] == list(range(1, kept + 1))


def test_round_steps_split_evenly_and_never_leave_a_round_empty():
    assert round_steps(500, 1) == [500] and round_steps(500, 2) == [250, 250] and round_steps(5, 2) == [3, 2]
    assert round_steps(2, 3) == [1, 1] and round_steps(0, 2) == []
    with pytest.raises(ValueError, match="rounds"):
        SelfTrainConfig(rounds=0)


def test_each_round_labels_the_pool_again_with_the_model_as_trained_so_far():
    region = _toy()
    calls, seen, weights = [], [], []
    torch.manual_seed(0)
    model = UNet2D(base=4, depth=2)
    tcfg = TrainConfig(steps=10, lr=1e-3, batch_size=2, crop=32, seed=0, eval_every=5)

    def pseudo(m):
        calls.append(len(seen))
        weights.append(_flat(m))
        return [Region(region.image, np.where(region.labels == 0, 1, 0).astype(np.uint8))]

    result = train_in_phases(model, [region], [], tcfg, SelfTrainConfig(rounds=2), 4, pseudo,
                             progress=lambda done, total, info=None: seen.append((done, (info or {}).get("phase"))))
    assert calls == [7, 10]                 # 6 supervised steps + a report; then 2 self-training steps + a report
    assert [h["step"] for h in result.history] == list(range(1, 11))
    assert [d for d, ph in seen if ph in ("training", "self-training")] == list(range(1, 11))
    assert not torch.equal(weights[0], weights[1])      # the second round's labels come from the trained model


def test_a_cancel_in_the_second_round_keeps_the_first_rounds_steps():
    from ml.progress import Cancelled, check_cancel

    region = _toy()
    state = {"pseudo": 0}

    def pseudo(m):
        state["pseudo"] += 1
        check_cancel(lambda: state["pseudo"] == 2)
        return [region]

    tcfg = TrainConfig(steps=10, lr=1e-3, batch_size=2, crop=32, seed=0, eval_every=5)
    with pytest.raises(Cancelled) as err:
        train_in_phases(UNet2D(base=4, depth=2), [region], [], tcfg, SelfTrainConfig(rounds=2), 4, pseudo)
    assert [h["step"] for h in err.value.result.history] == list(range(1, 9))
