"""Schedule the benchmark's tasks on spawn workers: dependencies first, longest work first.

Two 1-thread worker processes were ~1.25x faster in total than one 2-thread process on
the 2-core reference machine (small convolutions do not scale across threads), so the
CPU default is a pool of 2. Order: the full-supervision reference (longest), then the
initial model of each seed; each finished initial model releases that seed's strategy
runs (slow strategies before random); the short RF baselines fill the tail.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable

from . import al_tasks
from .al_protocol import Protocol
from .al_reuse import Reused

Task = tuple[float, int, str, Callable, tuple]


def _initial_tasks(proto: Protocol, reused: Reused) -> list[Task]:
    seeds = proto.seed_range
    tasks: list[Task] = [(0.0, s, "full", al_tasks.full_task, (s,)) for s in seeds[:proto.full_seeds]]
    tasks += [(1.0, s, "initial", al_tasks.initial_task, (s,)) for s in seeds if s not in reused.initial]
    tasks += [(4.0, s, "rf", al_tasks.rf_task, (s,)) for s in seeds if s not in reused.rf]
    for s in seeds:
        if s in reused.initial and "iou_z" not in reused.initial[s]:
            tasks.append((1.0, s, "initial", al_tasks.rescore_task, (s,)))      # a run from before iou_z
        elif s in reused.initial:
            tasks += _strategy_tasks(proto, s, reused.initial[s], reused)
    return tasks


def _strategy_tasks(proto: Protocol, seed: int, initial: dict, reused: Reused) -> list[Task]:
    return [(3.0 if name == "random" else 2.0, seed, name, al_tasks.strategy_task, (seed, name, initial))
            for name in proto.strategies if (seed, name) not in reused.strategy]


class _Inline:
    """Executor stand-in that runs tasks in this process (workers=0: debugging, profiling)."""

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller like a real executor
            fut.set_exception(exc)
        return fut

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _executor(proto: Protocol, initargs: tuple):
    if proto.workers <= 0:
        al_tasks.init_worker(*initargs[:-1], threads=0)
        return _Inline()
    return ProcessPoolExecutor(max_workers=proto.workers, mp_context=mp.get_context("spawn"),
                               initializer=al_tasks.init_worker, initargs=initargs)


def run_tasks(raw: str, labels: str, out_dir: Path, proto: Protocol, dataset: str | None = None,
              labels_dataset: str | None = None, device: str | None = None,
              log: Callable[[str], None] = print, pretrained: str | None = None,
              reused: Reused | None = None) -> dict:
    """Run every task; returns {"initial": {seed: res}, "strategy": [...], "full": [...], "rf": [...]}.

    ``pretrained``: body weights every new model starts from (``bench.al_pretrain``). ``reused``:
    an earlier run's results (``bench.al_reuse``), taken instead of running their tasks.
    """
    reused = reused or Reused("")
    workdir = Path(out_dir) / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    initargs = (str(raw), str(labels), proto, str(workdir), dataset, labels_dataset, device, pretrained, 1)
    results: dict = {"initial": dict(reused.initial), "strategy": list(reused.strategy.values()),
                     "full": [], "rf": list(reused.rf.values())}
    if reused.run:
        log(f"reused from {reused.run}: initial models of seeds {sorted(reused.initial)}, "
            f"{len(reused.strategy)} strategy runs, RF rows of seeds {sorted(reused.rf)}")
    ready = _initial_tasks(proto, reused)
    start = time.monotonic()
    slots = max(1, proto.workers)
    with _executor(proto, initargs) as pool:
        running: dict[Future, Task] = {}
        while ready or running:
            ready.sort(key=lambda t: (t[0], t[1]))
            while ready and len(running) < slots:
                task = ready.pop(0)
                running[pool.submit(task[3], *task[4])] = task
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                _, seed, name, _, _ = running.pop(fut)
                res = fut.result()
                log(f"[{time.monotonic() - start:7.0f}s] seed {seed} {name}: {_describe(res)}")
                if res["kind"] == "initial":
                    results["initial"][seed] = res
                    ready += _strategy_tasks(proto, seed, res, reused)
                else:
                    results[res["kind"]].append(res)
    results["wall_s"] = time.monotonic() - start
    return results


def _describe(res: dict) -> str:
    if res["kind"] == "strategy":
        rows = res["rows"]
        secs = sum(d["select_s"] + d["train_s"] + d["eval_s"] for d in res["details"])
        return f"IoU {rows[0]['iou']:.3f} -> {rows[-1]['iou']:.3f} at {rows[-1]['n_labeled']} patches ({secs:.0f} s)"
    if res["kind"] == "rf":
        return f"RF IoU {res['rows'][-1]['iou']:.3f} at {res['rows'][-1]['n_labeled']} patches ({res['seconds']:.0f} s)"
    if res["kind"] == "full":
        return f"full supervision IoU {res['iou']:.3f} after {res['steps']} steps ({res['seconds']:.0f} s)"
    return f"initial model IoU {res['iou']:.3f} ({res['seconds']:.0f} s)"
