"""The converged full-supervision reference alone: ``bench.al``'s full-supervision task for one protocol, without
the AL runs it is normally part of (a question about the ceiling, e.g. an architecture, costs one training).

```bash
.venv/bin/python -m bench.full_ceiling --raw ../shared/data/vnc/stack1/raw \
    --labels ../shared/data/vnc/stack1/mitochondria --quick --base 16 --self-train --cpu-bf16 --pretrain none \
    --z-radius 1 --out bench_out/full_z1
```

Takes ``bench.al``'s protocol flags (``--unlabeled`` pre-trains a held-out body as it does); the seeds with a
reference are ``--first-seed`` .. ``--first-seed + --full-seeds - 1`` (default one), one worker process each.
Prints and writes (``OUT/full.json``) one row per seed (test-half IoU each slice alone and in z consensus, steps, the
validation trace).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import al_pretrain, al_tasks
from .al import build_parser, check_inputs, protocol_from_args
from .al_protocol import load_data


def _one(args: tuple) -> dict:
    raw, labels, proto, workdir, device, weights, seed = args
    al_tasks.init_worker(raw, labels, proto, workdir, device=device, pretrained=weights, threads=1)
    start = time.monotonic()
    return {**al_tasks.full_task(seed), "wall_s": round(time.monotonic() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.description = __doc__.splitlines()[0]
    args = parser.parse_args(argv)
    proto = protocol_from_args(args)
    if proto.full_seeds < 1 or proto.z_radius < 0:
        parser.error("need --full-seeds >= 1 and --z-radius >= 0")
    try:
        check_inputs(args.raw, args.labels, proto, args.dataset, args.labels_dataset)
    except (ValueError, OSError) as exc:
        parser.exit(2, f"error: {' '.join(str(exc).split())}\n")
    out = Path(args.out)                     # a folder, as for bench.al: full.json and the body's work/ go in it
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    data = load_data(args.raw, args.labels, proto, args.dataset, args.labels_dataset)
    weights, _ = al_pretrain.prepare(data, proto, work, args.unlabeled, args.device, threads=max(1, proto.workers),
                                     log=lambda s: print(s, flush=True))
    del data
    seeds = range(proto.first_seed, proto.first_seed + proto.full_seeds)
    jobs = [(args.raw, args.labels, proto, str(work), args.device, weights, s) for s in seeds]
    spawn = mp.get_context("spawn")          # workers start clean of the parent's torch threads (as bench.al's)
    with ProcessPoolExecutor(max_workers=min(len(jobs), max(1, proto.workers)), mp_context=spawn) as pool:
        rows = list(pool.map(_one, jobs))
    for row in rows:
        trace = ", ".join(f"{t['val_iou']:.3f}" for t in row["trace"])
        print(f"seed {row['seed']}: IoU {row['iou']:.3f}, in z consensus {row['iou_z']:.3f}, {row['steps']} steps "
              f"(validation {trace}), {row['wall_s']:.0f} s")
    (out / "full.json").write_text(json.dumps({"protocol": proto.to_dict(), "weights": weights, "rows": rows}, indent=1))
    print(f"wrote {out / 'full.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
