"""``python -m bench.live --app``: pen-up to refreshed overlay through the server's own code.

A fresh workspace holds VNC stack 1 (added by path) and an active version trained by the
app's training job on 20 labeled patches of the pool half. The simulated user then paints
strokes into 512 x 512 views as in ``bench.live``, through ``app.services.labels.apply_stroke``
(rasterise, store, log); each stroke is followed by a live update run as a recorded job
(``app.jobs.run_job``: row, compute lock, the draft's load, fine-tune, save, view prediction)
and by the overlay PNG the browser fetches next (``app.routes._live_overlay`` + PNG encoding).
The browser's share (Dash's background-callback dispatch and its polling, ``callbacks.live.POLL_MS``)
is not in these numbers; the E2E test prints the whole path as a browser sees it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .live import VIEW, next_stroke, views
from .norms import DEV_Y


def _paint_patches(config, vid: int, mask: np.ndarray, patches: int, seed: int) -> None:
    """Label ``patches`` random 128 px patches of rows y < 384 densely from the ground truth."""
    from app.services import projects
    from ml.active import candidate_pool

    store = projects.label_store(config, vid)
    grid = candidate_pool(mask.shape, size=128, stride=64, y_range=(0, DEV_Y[0]))
    for i in np.random.default_rng(seed).choice(len(grid), patches, replace=False):
        p = grid[i]
        truth = mask[p.window] > 0
        for value, where in ((1, ~truth), (2, truth)):
            if where.any():
                store.paint(p.z, where, value, y0=p.y, x0=p.x)


def _svg(stroke: np.ndarray, x0: int, y0: int) -> str:
    """A brush path along the stroke's pixels (row-major order is enough for a short line)."""
    ys, xs = np.nonzero(stroke)
    order = np.argsort(xs * 10_000 + ys)
    pts = [(int(xs[i]) + x0, int(ys[i]) + y0) for i in order[:: max(1, len(order) // 12)]]
    return "M" + "L".join(f"{x},{y}" for x, y in pts)


def _stats(values: list[float]) -> str:
    return f"{np.percentile(values, 50):.2f} | {np.percentile(values, 95):.2f}"


def run(args: argparse.Namespace) -> int:
    from app import jobs
    from app.config import Config
    from app.routes import _live_overlay
    from app.services import factory, labels, live, projects, training
    from app.imaging import encode_png

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="activeseg-live-bench-"))
    raw_dir = Path(args.raw).resolve()
    config = Config(workspace=root, data_roots=(raw_dir.parent,), demo="none", device=args.device,
                    torch_threads=args.threads, extra={"live": dict(args.app_live)} if args.app_live else {})
    pid = projects.create_project(config, "live bench")["id"]
    vid = projects.add_volume_from_path(config, pid, str(raw_dir))["id"]
    from .norms import _data

    image, mask = _data(args.raw, args.labels)
    _paint_patches(config, vid, mask, args.patches, args.seed)
    t = time.monotonic()
    training.train_model(config, pid, steps=args.base_steps, lr=3e-3)
    print(f"active version trained by the app: {args.base_steps} steps, {time.monotonic() - t:.0f} s", flush=True)
    info = projects.volume_info(config, vid)
    rows: dict[str, list[float]] = {k: [] for k in ("save", "job", "load", "fine_tune", "predict", "render", "total")}
    for z, box in views(image.shape, args.views):
        y0, y1, x0, x1 = box
        view = [x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5]
        painted = np.zeros((VIEW, VIEW), bool)
        for _ in range(args.strokes):
            shown = live.view_prediction(config, vid, z)
            pred = np.zeros((VIEW, VIEW), bool)
            if shown is not None:
                sy0, _, sx0, _ = shown["box"]
                p = shown["prob"][1] > 0.5
                pred = p[y0 - sy0:y0 - sy0 + VIEW, x0 - sx0:x0 - sx0 + VIEW]
            found = next_stroke(pred, mask[z, y0:y1, x0:x1] > 0, painted)
            if found is None:
                break
            value, stroke = found
            painted |= stroke
            t0 = time.monotonic()
            labels.apply_stroke(config, vid, z, _svg(stroke, x0, y0), value, 6)
            t1 = time.monotonic()
            out = jobs.run_job(config, jobs.LIVE_KIND, pid, partial(live.update, config, vid, z, view))
            t2 = time.monotonic()
            assert out.ok, out.error
            png = encode_png(_live_overlay(config, vid, "prediction", z, info["shape"]))
            t3 = time.monotonic()
            timing = out.result["timings"]
            for key, value_s in (("save", t1 - t0), ("job", t2 - t1), ("load", timing["load_s"]),
                                 ("fine_tune", timing.get("fine_tune_s", 0.0)), ("predict", timing["predict_s"]),
                                 ("render", t3 - t2), ("total", t3 - t0)):
                rows[key].append(value_s)
            assert len(png) > 100
    n = len(rows["total"])
    print(f"\n{n} strokes on {factory.device_for(config)}, {args.threads} torch thread(s), "
          f"default model {factory.architecture(config)}, live settings {args.app_live or 'the default'}")
    print("| part | p50 s | p95 s |\n|---|---|---|")
    for key, values in rows.items():
        print(f"| {key} | {_stats(values)} |")
    return 0
