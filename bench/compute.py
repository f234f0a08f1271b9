"""``python -m bench.compute``: what inference and scoring cost on this machine.

1. Tiled inference throughput (Mvoxel/s) against a bare forward pass over the same input
   windows: the ratio is the price of cutting and bookkeeping (the context halo is in both,
   and reported as how many times the windows cover the image).
2. Peak RSS of ``python -m ml predict`` on a synthetic Zarr volume at least 4x larger than
   that peak: proof that prediction streams slices and never loads the volume.
3. Time to score 2,000 candidate patches without MC dropout and with it (BALD), for both MC
   scopes (``ml.mc``: last layer only, the default, and the whole decoder).
4. Scoring in z consensus against each slice alone.
5. Drawing the prediction overlay of a 1024² slice (``app.imaging.prediction_rgba``), and its two parts
   against what they replaced: the class map (``ml.predicted_class``, read by every overlay, object and
   validation) against numpy's ``argmax(0)``, and the colour lookup (``app.imaging.paint``) against numpy's
   fancy index.

Prints numbers and ratios; asserts no timings. Uses CUDA when available.
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ml.device import autocast, pick_device
from ml.infer import predict_image, tile_windows
from ml.model import UNet2D
from ml.predicted_class import predicted_class

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` runs after one warm-up."""
    fn()
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def tiled_vs_bare(model: UNet2D, size: int, tile: int, batch: int, device: torch.device, repeats: int) -> dict:
    """Image Mvoxel/s of predict_image and of model(x) alone on the very same input windows."""
    image = np.random.default_rng(0).random((size, size), dtype=np.float32)
    groups = tile_windows(size, size, tile, model.receptive_radius, model.multiple)
    batches = []
    for entries in groups.values():
        wins = np.stack([image[a:b, c:d] for _, (a, b, c, d) in entries])[:, None]
        batches += [torch.from_numpy(wins[i:i + batch]) for i in range(0, len(wins), batch)]
    n_windows = sum(len(e) for e in groups.values())
    covered = sum(len(e) * shape[0] * shape[1] for shape, e in groups.items())
    model.to(device).eval()
    fmt = torch.channels_last    # the layout predict_image uses (ml.device.inference_layout)
    model.to(memory_format=fmt)

    def bare() -> None:
        with torch.inference_mode(), autocast(device):
            for x in batches:
                model(x.to(device).contiguous(memory_format=fmt))

    t_tiled = _timed(lambda: predict_image(model, image, tile=tile, batch_size=batch, device=device), device, repeats)
    t_bare = _timed(bare, device, repeats)
    mvox = size * size / 1e6
    return {"tiled_mvox_s": mvox / t_tiled, "bare_mvox_s": mvox / t_bare, "ratio": t_tiled / t_bare,
            "tiles": n_windows, "redundancy": covered / (size * size)}


def write_volume(path: Path, depth: int, size: int = 2048) -> int:
    """Uncompressed uint8 Zarr (depth, size, size), written one slice at a time; returns its bytes."""
    import zarr

    arr = zarr.create_array(str(path), shape=(depth, size, size), chunks=(1, 512, 512), dtype="uint8",
                            compressors=None, zarr_format=3, overwrite=True)
    rng = np.random.default_rng(0)
    base = (rng.random((size, size)) * 80 + 100).astype(np.uint8)
    for z in range(depth):
        arr[z] = np.roll(base, 7 * z, axis=1)
    return depth * size * size


def _hwm_bytes(pid: int) -> int | None:
    """Peak RSS so far of a live process (Linux VmHWM), None when it is gone or unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss(cmd: list[str]) -> tuple[int, float]:
    """(peak RSS bytes, seconds) of a child process: polled high-water mark, cross-checked with getrusage."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        hwm = _hwm_bytes(proc.pid)
        if hwm is None:
            try:
                hwm = ps.memory_info().rss
            except psutil.Error:
                hwm = 0
        peak = max(peak, hwm)
        time.sleep(0.05)
    err = proc.stderr.read() if proc.stderr else ""
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-500:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after > before:  # this child set a new maximum: getrusage knows its exact peak
        peak = max(peak, after * 1024)
    return peak, seconds


def predict_memory(workdir: Path, factor: float, device: torch.device, tile: int, batch: int) -> dict:
    """Calibrate predict's peak RSS on a small volume, then run it on one >= factor x that peak."""
    from ml.checkpoint import save_checkpoint

    ckpt = workdir / "tiny.pt"
    save_checkpoint(ckpt, UNet2D(base=4, depth=2), ["background", "mitochondria"])

    def run(vol: Path) -> tuple[int, float]:
        return peak_rss([sys.executable, "-m", "ml", "predict", "--model", str(ckpt), "--raw", str(vol),
                         "--out", str(workdir / "pred.zarr"), "--tile", str(tile), "--batch", str(batch),
                         "--device", device.type])

    small_depth = 4
    write_volume(workdir / "small.zarr", small_depth)
    p0, t0 = run(workdir / "small.zarr")
    depth = max(small_depth, math.ceil(factor * 1.1 * p0 / (2048 * 2048)))  # 10% margin: the peak grows a little
    print(f"  calibration: {small_depth} slices of 2048x2048, peak RSS {p0 / MB:.0f} MB, {t0:.1f} s", flush=True)
    print(f"  writing a {depth}x2048x2048 uint8 Zarr ({depth * 4} MB, uncompressed) in {workdir}; predicting it "
          f"takes about {t0 / small_depth * depth / 60:.0f} min here and writes up to {depth * 16} MB of "
          "probabilities (float16, 2 classes)", flush=True)
    nbytes = write_volume(workdir / "big.zarr", depth)
    on_disk = sum(f.stat().st_size for f in (workdir / "big.zarr").rglob("*") if f.is_file())
    shutil.rmtree(workdir / "small.zarr", ignore_errors=True)
    peak, secs = run(workdir / "big.zarr")
    if nbytes < factor * peak:
        print(f"  note: the peak grew to {peak / MB:.0f} MB, so the volume is only {nbytes / peak:.1f}x the peak; "
              "rerun with a larger --rss-factor", flush=True)
    return {"calibration_peak_mb": p0 / MB, "volume_mb": nbytes / MB, "file_mb": on_disk / MB, "peak_mb": peak / MB,
            "volume_over_peak": nbytes / peak, "seconds": secs, "mvox_s": nbytes / 1e6 / secs, "slices": depth}


def scoring_cost(model: UNet2D, n: int, device: torch.device, mc_passes: int) -> dict:
    """Seconds to score n 128x128 candidates deterministically and with MC dropout (each scope)."""
    from ml.active import candidate_pool
    from ml.active.scoring import score_patches

    per_slice = 15 * 15
    volume = np.random.default_rng(1).random((math.ceil(n / per_slice), 1024, 1024), dtype=np.float32)
    patches = candidate_pool(volume.shape, size=128, stride=64, max_candidates=n, seed=0)

    def reader(p):
        return volume[p.window]

    out = {"candidates": len(patches)}
    for name, passes, scope in (("plain", 0, "head"), ("head", mc_passes, "head"), ("decoder", mc_passes, "decoder")):
        score_patches(model, reader, patches[:32], mc_passes=passes, device=device, mc_scope=scope)  # warm-up
        _sync(device)
        t = time.perf_counter()
        score_patches(model, reader, patches, mc_passes=passes, device=device, mc_scope=scope)
        _sync(device)
        out[f"{name}_s"] = time.perf_counter() - t
    out["head_ratio"] = out["head_s"] / out["plain_s"]
    out["decoder_ratio"] = out["decoder_s"] / out["plain_s"]
    out.update(consensus_cost(model, volume, device))
    return out


def consensus_cost(model: UNet2D, volume: np.ndarray, device: torch.device) -> dict:
    """Seconds to score candidates in z consensus (``z_weight`` 0.25) against each slice alone: every candidate of
    a grid (the neighbours are candidates too: a small volume) and those of every third slice only (no neighbour is
    a candidate: the worst case of a subsample of a large volume, three predictions for one)."""
    from ml.active import candidate_pool
    from ml.active.scoring import score_patches, volume_reader

    read = volume_reader(volume, 0.0, 1.0)
    grid = candidate_pool(volume.shape, size=128, stride=128)
    out = {"grid_candidates": len(grid)}
    for name, cands in (("grid", grid), ("sparse", [p for p in grid if p.z % 3 == 1])):
        out[f"{name}_candidates"] = len(cands)
        for weight in (0.0, 0.25):
            _sync(device)
            t = time.perf_counter()
            score_patches(model, read, cands, mc_passes=0, device=device, z_weight=weight)
            _sync(device)
            out[f"{name}_{weight:g}_s"] = time.perf_counter() - t
        out[f"{name}_ratio"] = out[f"{name}_0.25_s"] / out[f"{name}_0_s"]
    return out


def overlay_cost(side: int = 1024, classes: tuple[int, ...] = (2, 3), repeats: int = 20) -> dict:
    """Milliseconds per ``side``² slice (best of ``repeats``): the prediction overlay, the class map and the colour
    lookup, the last two against numpy's argmax and fancy index, which they replaced."""
    from app.imaging import paint, prediction_rgba

    cpu = torch.device("cpu")                    # numpy work: nothing to synchronise
    rng = np.random.default_rng(0)
    out = {}
    for c in classes:
        prob = rng.random((c, side, side), dtype=np.float32)
        prob /= prob.sum(0)
        out[f"overlay_{c}_ms"] = _timed(lambda: prediction_rgba(prob, [{"color": "#ff0000"}] * c), cpu, repeats) * 1e3
        out[f"predicted_class_{c}_ms"] = _timed(lambda: predicted_class(prob), cpu, repeats) * 1e3
        out[f"argmax_{c}_ms"] = _timed(lambda: prob.argmax(0), cpu, repeats) * 1e3
    lut = rng.integers(0, 256, (256, 4), dtype=np.uint8)
    index = rng.integers(0, 256, (side, side), dtype=np.uint8)
    out["paint_ms"] = _timed(lambda: paint(lut, index), cpu, repeats) * 1e3
    out["fancy_ms"] = _timed(lambda: lut[index], cpu, repeats) * 1e3
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compute", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--base", type=int, default=8, help="U-Net width for throughput and scoring (default 8)")
    p.add_argument("--size", type=int, help="throughput image side (default 2048 CPU, 4096 CUDA)")
    p.add_argument("--tile", type=int, default=512, help="output tile (px); context is the receptive radius")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--candidates", type=int, default=2000)
    p.add_argument("--mc-passes", type=int, default=8)
    p.add_argument("--rss-factor", type=float, default=4.0, help="volume size / predict peak RSS (default 4)")
    p.add_argument("--skip-rss", action="store_true", help="skip the (slow on CPU) peak-memory test")
    p.add_argument("--workdir", help="where the synthetic volumes go (default: a temp folder, removed)")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = UNet2D(base=args.base)
    size = args.size or (4096 if device.type == "cuda" else 2048)
    print(f"device {device}, torch threads {torch.get_num_threads()}, UNet2D base {args.base}", flush=True)
    tp = tiled_vs_bare(model, size, args.tile, args.batch, device, repeats=3 if device.type == "cuda" else 2)
    print(f"1. tiled inference {size}x{size}, tile {args.tile} + {model.receptive_radius} px context: "
          f"{tp['tiled_mvox_s']:.2f} Mvoxel/s; bare forward on the same {tp['tiles']} windows: "
          f"{tp['bare_mvox_s']:.2f} Mvoxel/s; tiled time / bare time = {tp['ratio']:.3f} "
          f"(windows cover the image {tp['redundancy']:.2f}x)", flush=True)
    if not args.skip_rss:
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="activeseg-compute-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            print("2. peak memory of `python -m ml predict` (tiny model, tile 512, batch 4):", flush=True)
            mem = predict_memory(workdir, args.rss_factor, device, 512, 4)
            print(f"  {mem['slices']}x2048x2048 uint8 volume = {mem['volume_mb']:.0f} MB ({mem['file_mb']:.0f} MB "
                  f"on disk): peak RSS {mem['peak_mb']:.0f} MB, volume/peak = {mem['volume_over_peak']:.1f}x, "
                  f"{mem['seconds']:.0f} s ({mem['mvox_s']:.2f} Mvoxel/s end to end)", flush=True)
        finally:
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
    sc = scoring_cost(model, args.candidates, device, args.mc_passes)
    print(f"3. scoring {sc['candidates']} candidates (128x128): {sc['plain_s']:.1f} s without MC dropout; with "
          f"{args.mc_passes} MC passes (BALD) {sc['head_s']:.1f} s sampling the last layer ({sc['head_ratio']:.2f}x, "
          f"the default) and {sc['decoder_s']:.1f} s sampling the whole decoder ({sc['decoder_ratio']:.2f}x)",
          flush=True)
    print(f"4. in z consensus (w = 0.25): a grid of {sc['grid_candidates']}, their neighbours candidates too, "
          f"{sc['grid_0.25_s']:.1f} s against {sc['grid_0_s']:.1f} s each slice alone ({sc['grid_ratio']:.2f}x); "
          f"{sc['sparse_candidates']} on every third slice, no neighbour a candidate, {sc['sparse_0.25_s']:.1f} s "
          f"against {sc['sparse_0_s']:.1f} s ({sc['sparse_ratio']:.2f}x)", flush=True)
    ov = overlay_cost()
    print("5. a 1024x1024 slice's prediction overlay: " + "; ".join(
        f"{c} classes {ov[f'overlay_{c}_ms']:.1f} ms (class map {ov[f'predicted_class_{c}_ms']:.2f} ms against "
        f"numpy argmax {ov[f'argmax_{c}_ms']:.1f} ms)" for c in (2, 3)) + f"; colour lookup {ov['paint_ms']:.2f} ms "
        f"against numpy's fancy index {ov['fancy_ms']:.1f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
