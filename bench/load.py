"""``python -m bench.load``: many users at once against gunicorn (issue 9, "Many users at once").

Each simulated user (a thread with its own keep-alive ``requests`` session) loops: scrub to a
neighbouring slice of a random plane and fetch its grey tile with a contrast of its own (so the
server renders and encodes it, not just its cache) and the labels overlay; every 5th step paint
a short stroke on an xy slice through the REST API; every 10th poll the jobs list. Users 0 and 1
paint the same slice at the same instant (a barrier) on disjoint rows. Afterwards the stroke log
must hold each acknowledged stroke exactly once, and both same-slice strokes must be there.

Prints requests/s, p50 / p95 / p99 latency per kind, errors, and the stroke check. Asserts nothing;
``tests/e2e/test_load.py`` runs a short form and checks errors and strokes.

    python -m bench.load --workers 1,2,3 --clients 20 --seconds 60
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
PLANES = ("xy", "xz", "yz")


class Recorder:
    """Latencies (ms) and errors per request kind, from every thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.strokes: list[dict] = []

    def timed(self, kind: str, fn, ok=(200,)):
        start = time.perf_counter()
        try:
            resp = fn()
            good = resp.status_code in ok
        except requests.RequestException:
            resp, good = None, False
        ms = (time.perf_counter() - start) * 1000
        with self.lock:
            self.ms[kind].append(ms)
            if not good:
                self.errors[kind] += 1
        return resp if good else None


def _extent(shape: tuple[int, int, int], plane: str) -> int:
    return {"xy": shape[0], "xz": shape[1], "yz": shape[2]}[plane]


def user(url: str, vid: int, shape: tuple[int, int, int], index: int, stop: float, rec: Recorder,
         barrier: threading.Barrier | None, auth: dict) -> None:
    """One simulated user until ``stop`` (time.monotonic)."""
    rng = random.Random(index)
    s = requests.Session()
    s.headers.update(auth)
    plane, pos = rng.choice(PLANES), {p: _extent(shape, p) // 2 for p in PLANES}
    step = 0
    while time.monotonic() < stop:
        step += 1
        if rng.random() < 0.2:
            plane = rng.choice(PLANES)
        pos[plane] = int(np.clip(pos[plane] + rng.choice((-1, 1)), 0, _extent(shape, plane) - 1))
        lo, hi = rng.randint(0, 40), rng.randint(200, 255)
        rec.timed("tile", lambda: s.get(f"{url}/tiles/{vid}/{plane}/{pos[plane]}.png?lo={lo}&hi={hi}", timeout=30))
        rec.timed("overlay", lambda: s.get(f"{url}/overlay/{vid}/labels/{plane}/{pos[plane]}.png?rev={step}",
                                           timeout=30))
        if step % 5 == 0 or (barrier is not None and step == 1):
            if barrier is not None and step == 1:
                barrier.wait(30)                       # users 0 and 1: the same slice at the same instant
                z, y = shape[0] // 2, 20 + 10 * index
            else:
                z, y = rng.randrange(shape[0]), rng.randrange(8, shape[1] - 8)
            x0 = rng.randrange(0, shape[2] - 40)
            body = {"z": z, "path": f"M{x0},{y}L{x0 + 30},{y}", "value": rng.choice((1, 2)), "width": 3}
            resp = rec.timed("stroke", lambda: s.post(f"{url}/api/volumes/{vid}/strokes", json=body, timeout=30),
                             ok=(201,))
            if resp is not None:
                with rec.lock:
                    rec.strokes.append({**body, "y": y, "user": index, "stroke_id": resp.json()["stroke_id"]})
        if step % 10 == 0:
            rec.timed("jobs", lambda: s.get(f"{url}/api/jobs?limit=12", timeout=30))


def run_load(url: str, vid: int, shape: tuple[int, int, int], clients: int, seconds: float,
             auth: dict | None = None) -> dict:
    """Run ``clients`` users for ``seconds``; returns the numbers and the stroke check."""
    rec, barrier = Recorder(), threading.Barrier(2) if clients >= 2 else None
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=user, args=(url, vid, shape, i, stop, rec, barrier if i < 2 else None,
                                                   auth or {})) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    events = requests.get(f"{url}/api/volumes/{vid}/labels/events", headers=auth or {}, timeout=60).json()
    logged = sorted(e["id"] for e in events if e["kind"] in ("stroke", "fill", "erase"))
    firsts = {u: next((st for st in rec.strokes if st["user"] == u), None) for u in (0, 1)}
    pair = [st for st in firsts.values() if st is not None]
    ids = {e.get("stroke_id") for e in events}
    return {"wall_s": wall, "ms": dict(rec.ms), "errors": dict(rec.errors), "acknowledged": len(rec.strokes),
            "logged": len(logged), "pair": pair,       # users 0 and 1: the same slice at the same instant
            "pair_kept": len(pair) == 2 and all(p["stroke_id"] in ids for p in pair)}


def report(result: dict, label: str) -> str:
    total = sum(len(v) for v in result["ms"].values())
    lines = [f"{label}: {total / result['wall_s']:.0f} req/s over {result['wall_s']:.0f} s, "
             f"errors {sum(result['errors'].values())}, strokes acknowledged {result['acknowledged']} / "
             f"logged {result['logged']}",
             "| kind | requests | p50 ms | p95 ms | p99 ms | errors |", "|---|---|---|---|---|---|"]
    for kind, ms in sorted(result["ms"].items()):
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        lines.append(f"| {kind} | {len(ms)} | {p50:.0f} | {p95:.0f} | {p99:.0f} | {result['errors'].get(kind, 0)} |")
    return "\n".join(lines)


# --- a server to load ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(workspace: Path, workers: int, threads: int = 8, env_extra: dict | None = None):
    """``gunicorn --preload --workers W --threads T app.wsgi:server`` on a free port; (process, url)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update({"APP_WORKSPACE": str(workspace), "APP_DEMO": "synthetic", "APP_PRETRAIN_AUTO": "0",
                "PYTHONPATH": str(REPO), **(env_extra or {})})
    cmd = [sys.executable, "-m", "gunicorn", "--preload", "--workers", str(workers), "--threads", str(threads),
           "--timeout", "120", "--bind", f"127.0.0.1:{port}", "app.wsgi:server"]
    log = open(Path(workspace).parent / f"gunicorn-{workers}.log", "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 300
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: see {log.name}")
        try:
            if requests.get(url + "/healthz", timeout=2).ok:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError("gunicorn did not answer within 300 s")


def stop(proc) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def demo_volume(url: str) -> tuple[int, tuple[int, int, int]]:
    project = requests.get(f"{url}/api/projects", timeout=30).json()[0]
    vol = requests.get(f"{url}/api/projects/{project['id']}/volumes", timeout=30).json()[0]
    return vol["id"], tuple(vol["shape"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,2", help="gunicorn worker counts to compare (comma-separated)")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--demo-shape", default="16,512,512")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="activeseg-load-"))
    for w in (int(v) for v in args.workers.split(",")):
        proc, url = start_gunicorn(root / f"ws{w}", w, args.threads, {"APP_DEMO_SHAPE": args.demo_shape})
        try:
            vid, shape = demo_volume(url)
            result = run_load(url, vid, shape, args.clients, args.seconds)
            print(report(result, f"gunicorn {w} worker(s) x {args.threads} threads, {args.clients} users, "
                                 f"volume {shape}"))
            print(f"same-slice strokes of users 0 and 1 both kept: {result['pair_kept']}", flush=True)
        finally:
            stop(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
