"""Pick the compute device: CUDA when present, CPU otherwise, same code path for both."""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch
from torch import nn


def pick_device(prefer: str | None = None) -> torch.device:
    """Return ``prefer`` if given, else CUDA when available, else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX tiles or AVX-512 BF16).

    Elsewhere CPU bf16 autocast is emulated and 20x slower (BENCHMARKS v12), so it is only ever
    switched on behind this check.
    """
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def mixed_dtype(device: torch.device, enabled: bool = True, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype on ``device`` (None: fp32): on CUDA bf16 when supported, else fp16; on a CPU bf16
    only with ``cpu_bf16`` and native bf16 (training asks for it by ``TrainConfig.cpu_bf16``; inference and
    scoring stay fp32 on the CPU)."""
    if enabled and device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if enabled and cpu_bf16 and device.type == "cpu" and native_cpu_bf16():
        return torch.bfloat16
    return None


def precision(device: torch.device, enabled: bool = True, cpu_bf16: bool = False) -> str:
    """``mixed_dtype``'s answer by name ("bf16", "fp16" or "fp32"), as a trained file records what ran."""
    dtype = mixed_dtype(device, enabled, cpu_bf16)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, enabled: bool = True, cpu_bf16: bool = False):
    """Mixed precision in ``mixed_dtype``; a no-op where that is fp32."""
    dtype = mixed_dtype(device, enabled, cpu_bf16)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Draw random numbers (MC-dropout masks) from ``seed`` inside the block; the caller's RNG
    state is restored after it. ``None`` leaves the global RNG alone.

    Without it, MC-dropout scores depend on whatever the process ran before, so the same
    model could suggest different patches twice (seen in the benchmark's BALD runs).
    """
    if seed is None:
        yield
        return
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(seed))
        yield


@contextlib.contextmanager
def inference_layout(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` on ``device`` in eval mode and channels-last memory; flags and layout restored after.

    Channels-last is the fast convolution layout on CUDA and on CPU too (oneDNN): 1.6x
    faster inference for the base-8 U-Net on one CPU thread, with the same numbers.
    Feed it inputs made ``x.contiguous(memory_format=torch.channels_last)``.
    """
    flags = {m: m.training for m in model.modules()}
    was_channels_last = any(w.ndim == 4 and not w.is_contiguous()
                            and w.is_contiguous(memory_format=torch.channels_last) for w in model.parameters())
    model.to(device, memory_format=torch.channels_last).eval()
    try:
        yield model
    finally:
        if not was_channels_last:
            model.to(memory_format=torch.contiguous_format)
        for m, flag in flags.items():
            m.train(flag)
