"""``python -m bench.train_speed``: training steps per second on this machine, by setting.

One training step as ``ml.train`` runs it (batch of 8 crops of 128 px, AdamW, cross-entropy
over labeled pixels) for the base-8 (benchmark) and base-16 (app) U-Net, under:
fp32; bf16 autocast (the CPU's native bf16, when it has it); channels-last memory; both;
``torch.compile`` (inductor; compile time reported apart); 1 and 2 torch threads.
Prints a markdown table of seconds per step (median of ``--steps`` after warm-up) and the
ratio to the fp32 baseline of the same width and thread count. Asserts nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from ml.model import UNet2D
from ml.train import labeled_loss

SETTINGS = ("fp32", "bf16", "channels_last", "bf16+channels_last", "compile")


def _batch(crop: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, crop, crop, generator=g)
    y = torch.randint(0, 3, (batch, crop, crop), generator=g)
    return x, y


def time_steps(base: int, setting: str, threads: int, steps: int, crop: int = 128, batch: int = 8) -> dict:
    """Median seconds per step (and compile seconds for ``compile``)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = UNet2D(base=base)
    fmt = torch.channels_last if "channels_last" in setting else torch.contiguous_format
    model.to(memory_format=fmt).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = _batch(crop, batch)
    x = x.contiguous(memory_format=fmt)
    net = torch.compile(model) if setting == "compile" else model
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if "bf16" in setting else contextlib.nullcontext()

    def step() -> None:
        with amp:
            logits = net(x)
        loss = labeled_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"base": base, "setting": setting, "threads": threads, "step_s": statistics.median(times),
            "first_s": first}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--bases", default="8,16")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args(argv)
    rows = []
    for base in (int(b) for b in args.bases.split(",")):
        for threads in (int(t) for t in args.threads.split(",")):
            for setting in args.settings.split(","):
                try:
                    rows.append(time_steps(base, setting, threads, args.steps))
                except Exception as exc:  # a setting this machine cannot run is a result too
                    rows.append({"base": base, "setting": setting, "threads": threads, "error": str(exc)[:80]})
                print(rows[-1], flush=True)
    print("| base | threads | setting | s/step | vs fp32 | first step s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['base']} | {r['threads']} | {r['setting']} | failed: {r['error']} | | |")
            continue
        ref = next((q for q in rows if q["base"] == r["base"] and q["threads"] == r["threads"]
                    and q["setting"] == "fp32" and "step_s" in q), None)   # fp32 may not be among --settings
        ratio = f"{ref['step_s'] / r['step_s']:.2f}x" if ref else "-"
        print(f"| {r['base']} | {r['threads']} | {r['setting']} | {r['step_s']:.3f} | {ratio} | {r['first_s']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
