"""The benchmark's units of work, run in spawn worker processes with one torch thread each.

A worker loads the volume once (``init_worker``) and then runs tasks: the initial model of a
seed (shared by every strategy of that seed, saved to disk), one strategy's AL run (warm
start from round to round), the full-supervision reference and the random-forest baseline.
Tasks return plain dicts (rows for curves.csv plus timing details).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ml.active import NEEDS_LABELED, NEEDS_MC, Patch, select
from ml.active.scoring import score_patches, volume_reader
from ml.dataset import Region, regions_from_patches
from ml.device import pick_device
from ml.model import UNet2D
from ml.pretrain import init_from_pretrained
from ml.self_training import pseudo_regions, train_in_phases, window_boxes
from ml.slice_context import channels_for
from ml.train import TrainConfig, clone_state, train

from .al_protocol import (BenchData, LabelState, Protocol, candidates, load_data, pool_grid, random_picks,
                          random_sequence, seed_draw, validation_patches)
from .al_scores import fg_pixels, fg_share, heldout_prob_scores
from .saved_runs import fg_prob, model_file

_STATE: dict = {}


def init_worker(raw: str, labels: str, proto: Protocol, workdir: str, dataset: str | None = None,
                labels_dataset: str | None = None, device: str | None = None, pretrained: str | None = None,
                threads: int = 1) -> None:
    """Pool initializer: one thread, the data in memory, the device chosen, the pre-trained body."""
    if int(threads) > 0:  # 0: keep the caller's setting (inline runs)
        torch.set_num_threads(int(threads))
    _STATE.update(proto=proto, workdir=Path(workdir), device=pick_device(device), pretrained=pretrained,
                  data=load_data(raw, labels, proto, dataset, labels_dataset))


def _ctx() -> tuple[BenchData, Protocol, torch.device]:
    return _STATE["data"], _STATE["proto"], _STATE["device"]


def _new_model(proto: Protocol, seed: int) -> UNet2D:
    """A new model as the app makes one: seeded head, body from the pre-trained weights if any."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = UNet2D(in_channels=channels_for(proto.z_radius), base=proto.base, depth=proto.depth,
                       dropout=proto.dropout)
    if _STATE.get("pretrained"):
        init_from_pretrained(model, _STATE["pretrained"])
    return model


def _regions(data: BenchData, patches: list[Patch], proto: Protocol) -> list[Region]:
    """Fully labeled patches with a little real image context, taken from the pool half only."""
    return regions_from_patches(data.pool_input, data.mask, patches, offset=1, pad=proto.patch // 8)


def _fit(model: UNet2D, regions: list[Region], val: list[Region], steps: int, lr: float, seed: int,
         proto: Protocol, device: torch.device, self_steps: int = 0, head_steps: int = 0,
         anchor: float = 0.0):
    """``steps`` steps; with ``proto.self_train`` the last ``self_steps`` also learn pseudo-labels of the pool
    half (``ml.self_training.train_in_phases``, as the app trains)."""
    # One validation at the end: picking among a run's checkpoints by a few held-out patches
    # was noise that cost more than it saved (a dev run on the pool half kept step 150 of 1200).
    config = TrainConfig(steps=steps, lr=lr, batch_size=proto.batch, crop=proto.crop, seed=seed,
                         eval_every=steps, warmup_steps=min(10, steps // 5), ema=proto.ema,
                         head_steps=head_steps, anchor=anchor, zoom=proto.zoom,
                         balance=proto.balance, cpu_bf16=proto.cpu_bf16)
    if not proto.self_train:
        return train(model, regions, val, config, device=device)
    return train_in_phases(model, regions, val, config, proto.self_train_config(), self_steps,
                           lambda m: _pseudo(m, val, seed, device), device=device)


def _pseudo(model: UNet2D, val: list[Region], seed: int, device: torch.device) -> list[Region]:
    """Pseudo-labels of the pool half by ``model`` (validation patches spared; unlike the app, labeled
    patches are not: v10 was measured so, their pixels hold the truth in the other half of each batch)."""
    data = _STATE["data"]
    cfg = _STATE["proto"].self_train_config()
    boxes = window_boxes(data.image.shape, cfg, seed, rows=(0, data.split_y))
    return pseudo_regions(model, data.seen(data.image), 0.0, 1.0, boxes, cfg, held_out=val, device=device)


def unet_scores(model: UNet2D, data: BenchData, proto: Protocol, device: torch.device) -> dict[str, float]:
    """Test-half scores of the argmax prediction (tiled, as the app predicts), slice by slice and in z
    consensus (``iou_z``, as the app reads a volume's prediction)."""
    return heldout_prob_scores(lambda image: fg_prob(model, image, proto, device), data, proto.z_consensus)


def _embedder(proto: Protocol, seed: int, device: torch.device):
    """``embed(patches)``: the seed's new model's pooled bottleneck features (for ``proto.initial``)."""
    if proto.initial == "random":
        return None
    data = _STATE["data"]
    model = _new_model(proto, seed)
    reader = volume_reader(data.pool_input, 0.0, 1.0)
    return lambda patches: score_patches(model, reader, patches, mc_passes=0, batch_size=16,
                                         device=device).embeddings


def _init_path(seed: int) -> Path:
    return model_file(_STATE["workdir"], seed)


def _saved_initial(proto: Protocol, seed: int) -> UNet2D:
    """The seed's initial model as ``initial_task`` saved it (a reused run's too)."""
    model = _new_model(proto, seed)
    model.load_state_dict(torch.load(_init_path(seed), weights_only=True))
    return model


def initial_task(seed: int) -> dict:
    """Train the seed's initial model on its m random patches; save it for the strategy runs."""
    data, proto, device = _ctx()
    start = time.monotonic()
    draw = seed_draw(data, proto, seed, _embedder(proto, seed, device))
    val, patches = draw.val, draw.patches
    train_seed = seed + proto.init_train_seed      # another training of the same draw (bench.initial_steps)
    model = _new_model(proto, train_seed)
    regions, val_regions = _regions(data, patches, proto), _regions(data, val, proto)
    extra = proto.self_train_steps if proto.self_train else 0     # the app's split: the last third self-trains
    _fit(model, regions, val_regions, proto.init_steps + extra, proto.lr, train_seed, proto, device, self_steps=extra,
         head_steps=proto.init_head_steps, anchor=proto.init_anchor)
    scores = unet_scores(model, data, proto, device)
    path = _init_path(seed)
    torch.save(model.state_dict(), path)
    return {"kind": "initial", "seed": seed, **scores, "patches": len(patches), "fg_share": fg_share(data.mask, patches),
            "fg_pixels": fg_pixels(data.mask, patches), "seconds": time.monotonic() - start}


def _pick(strategy: str, model: UNet2D, cands: list[Patch], state: LabelState, seed: int, rnd: int,
          proto: Protocol, data: BenchData, device: torch.device) -> list[Patch]:
    if strategy == "random":
        return random_picks(cands, proto.k, seed, rnd)
    reader = volume_reader(data.pool_input, 0.0, 1.0)  # the pool half only, already normalised
    mc = proto.mc_passes if strategy in NEEDS_MC or strategy == "hybrid" else 0
    context = model.receptive_radius if proto.score_context else 0
    scores = score_patches(model, reader, cands, mc_passes=mc, batch_size=16, device=device,
                          seed=seed * 1000 + rnd, context=context, z_weight=proto.score_z)
    labeled = None
    if strategy in NEEDS_LABELED:
        labeled = score_patches(model, reader, state.patches, mc_passes=0, batch_size=16, device=device,
                                context=context).embeddings
    idx, _ = select(strategy, scores, proto.k, seed=seed * 1000 + rnd, labeled_embeddings=labeled)
    return [cands[i] for i in idx]


def rescore_task(seed: int) -> dict:
    """A reused initial model's scores, for a run that recorded fewer of them (before ``iou_z``)."""
    data, proto, device = _ctx()
    start = time.monotonic()
    model = _saved_initial(proto, seed)
    return {"kind": "initial", "seed": seed, **unet_scores(model, data, proto, device), "rescored": True,
            "seconds": time.monotonic() - start}


def strategy_task(seed: int, strategy: str, initial: dict) -> dict:
    """One AL run: rounds of (score, pick k, label, warm-start fine-tune, test IoU); ``initial``: its start's scores."""
    data, proto, device = _ctx()
    draw = seed_draw(data, proto, seed, _embedder(proto, seed, device))
    grid, state, val_regions = draw.grid, draw.state, _regions(data, draw.val, proto)
    model = _saved_initial(proto, seed)
    rows = [dict(strategy=strategy, seed=seed, round=0, n_labeled=len(state.patches), iou=initial["iou"],
                 iou_z=initial["iou_z"])]
    details = []
    for rnd in range(1, proto.rounds + 1):
        t0 = time.monotonic()
        picks = _pick(strategy, model, candidates(grid, state, proto, seed, rnd), state, seed, rnd, proto, data,
                      device)
        state.add(picks)
        t1 = time.monotonic()                  # training time includes pseudo-labeling
        _fit(model, _regions(data, state.patches, proto), val_regions, proto.round_steps, proto.round_lr,
             seed * 1000 + rnd, proto, device, self_steps=proto.round_steps)
        t2 = time.monotonic()
        scores = unet_scores(model, data, proto, device)
        rows.append(dict(strategy=strategy, seed=seed, round=rnd, n_labeled=len(state.patches), iou=scores["iou"],
                         iou_z=scores["iou_z"]))
        details.append(dict(strategy=strategy, seed=seed, round=rnd, miou=scores["miou"],
                            fg_share=fg_share(data.mask, picks), select_s=t1 - t0, train_s=t2 - t1,
                            eval_s=time.monotonic() - t2))
    return {"kind": "strategy", "seed": seed, "strategy": strategy, "rows": rows, "details": details}


def _full_regions(data: BenchData, val: list[Patch]) -> list[Region]:
    """The whole pool half labeled (one region per slice), minus the validation patches."""
    labels = data.mask[:, :data.split_y] + np.uint8(1)
    for p in val:
        labels[p.window] = 0
    pool = data.pool_input
    return [Region(pool[z], labels[z], z, 0, 0) for z in range(labels.shape[0])]


def full_task(seed: int) -> dict:
    """Full supervision: all pool labels, a new model (pre-trained body, pulled toward it by
    ``proto.init_anchor`` as the initial model is), one long schedule, then on until plateau.

    One cosine schedule over ``full_steps`` (1.5x the AL run's steps in the quick protocol):
    restarting short schedules after the AL budget (protocol v3) left the reference at 0.43
    IoU, below the AL runs it is meant to bound. Extra chunks follow while the validation
    IoU still improves; the best validated weights are scored.
    """
    data, proto, device = _ctx()
    start = time.monotonic()
    grid = pool_grid(data, proto)
    val = validation_patches(data, grid, proto, seed)
    regions, val_regions = _full_regions(data, val), _regions(data, val, proto)
    model = _new_model(proto, seed)
    steps = proto.full_steps
    result = _fit(model, regions, val_regions, steps, proto.lr, seed, proto, device, anchor=proto.init_anchor)
    best, best_state = result.best_val_iou or 0.0, clone_state(model)
    trace = [dict(steps=steps, val_iou=best)]
    stale = 0
    while steps + proto.full_chunk <= proto.full_max_factor * proto.al_steps and stale < proto.full_patience:
        result = _fit(model, regions, val_regions, proto.full_chunk, proto.round_lr, seed + steps, proto, device)
        steps += proto.full_chunk
        score = result.best_val_iou or 0.0
        trace.append(dict(steps=steps, val_iou=score))
        if score < best + proto.full_tol:
            stale += 1
            continue
        best, best_state, stale = score, clone_state(model), 0
    model.load_state_dict(best_state)
    return {"kind": "full", "seed": seed, **unet_scores(model, data, proto, device), "steps": steps,
            "n_labeled": round(sum(r.n_labeled for r in regions) / proto.patch ** 2), "trace": trace,
            "seconds": time.monotonic() - start}


def rf_task(seed: int) -> dict:
    """The RF baseline on the random strategy's patches at the protocol's RF budgets."""
    from .rf_baseline import RFBaseline

    data, proto, device = _ctx()
    start = time.monotonic()
    sequence = random_sequence(data, proto, seed, _embedder(proto, seed, device))
    rf = RFBaseline(data, proto, seed)
    rows = []
    for rnd in proto.rf_rounds():
        patches = sequence[rnd]
        scores = rf.scores(rf.fit(patches))
        rows.append(dict(strategy="rf_baseline", seed=seed, round=rnd, n_labeled=len(patches), **scores))
    return {"kind": "rf", "seed": seed, "rows": rows, "seconds": time.monotonic() - start}
