"""Slice round-trip time: server render + PNG transfer over HTTP on localhost, cold and cached.

Starts ``python -m app`` in a subprocess on a fresh workspace with one volume (the VNC
stack1/raw folder when present, else a synthetic 1024x1024 stack written as TIFF into a
data root), then times GET /tiles/... with a keep-alive client:

- cold:   every request a slice/window never rendered before (read + window + PNG encode)
- cached: the same URLs again (server LRU hit: lookup + transfer)
- 304:    revalidation with If-None-Match (what a browser does for a tile it holds)

Usage: python -m bench.tiles [--n 200] [--volume PATH|synthetic] [--port 8077]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
VNC_RAW = REPO.parent / "shared" / "data" / "vnc" / "stack1" / "raw"


def synthetic_stack(folder: Path, shape=(8, 1024, 1024)) -> Path:
    import tifffile

    from ml.synthetic import make_em_volume

    raw, _ = make_em_volume(shape, seed=0)
    path = folder / "synthetic_1024.tif"
    tifffile.imwrite(path, raw, imagej=True, metadata={"axes": "ZYX"})
    return path


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start_server(workspace: Path, volume: Path, port: int) -> subprocess.Popen:
    if not port_free(port):
        raise RuntimeError(f"port {port} is in use; pass --port")
    env = dict(os.environ, PYTHONPATH=str(REPO), APP_DATA_ROOTS=str(volume.parent))
    cmd = [sys.executable, "-m", "app", "--workspace", str(workspace), "--demo", str(volume), "--port", str(port)]
    log = open(workspace.parent / "server.log", "wb")   # not a pipe: the request log would fill it and block
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(workspace.parent / 'server.log').read_text()[-2000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).ok:
                    return proc
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.5)
        raise RuntimeError("server did not start in 180 s")
    except BaseException:
        proc.kill()
        raise


def timed(session: requests.Session, urls: list[str], headers: list[dict] | None = None) -> np.ndarray:
    out = []
    for i, url in enumerate(urls):
        t = time.perf_counter()
        r = session.get(url, headers=(headers[i] if headers else None))
        _ = r.content
        out.append(time.perf_counter() - t)
        assert r.status_code in (200, 304), (url, r.status_code)
    return np.asarray(out) * 1000.0


def summary(name: str, ms: np.ndarray, nbytes: float | None = None) -> str:
    extra = f"  ~{nbytes / 1024:.0f} KiB/PNG" if nbytes else ""
    return (f"{name:8s} n={len(ms):4d}  p50={np.percentile(ms, 50):6.2f} ms  p95={np.percentile(ms, 95):6.2f} ms"
            f"  mean={ms.mean():6.2f} ms{extra}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--volume", default=None, help="volume path, or 'synthetic' (default: VNC stack1/raw if present)")
    ap.add_argument("--port", type=int, default=8077)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.volume == "synthetic" or (args.volume is None and not VNC_RAW.is_dir()):
            (tmp / "data").mkdir()
            volume = synthetic_stack(tmp / "data")
        else:
            volume = Path(args.volume or VNC_RAW).resolve()
        proc = start_server(tmp / "ws", volume, args.port)
        try:
            base = f"http://127.0.0.1:{args.port}"
            s = requests.Session()
            s.get(f"{base}/tiles/1/xy/0.png")   # warm-up: open the volume once
            z, y, x = _shape(tmp / "ws")
            # unique (slice, window) pairs: every request renders
            urls = [f"{base}/tiles/1/xy/{i % z}.png?lo={1 + i // z}&hi=230" for i in range(args.n)]
            cold = timed(s, urls)
            size = np.mean([len(s.get(u).content) for u in urls[:10]])
            cached = timed(s, urls)
            etags = [{"If-None-Match": s.get(u).headers["ETag"]} for u in urls]
            revalidate = timed(s, urls, etags)
            print(f"volume {volume} shape {(z, y, x)}; {args.n} requests each, keep-alive client, localhost")
            print(summary("cold", cold, size))
            print(summary("cached", cached, size))
            print(summary("304", revalidate))
        finally:
            proc.terminate()
            proc.wait(10)


def _shape(workspace: Path) -> tuple[int, int, int]:
    import json
    import sqlite3

    con = sqlite3.connect(workspace / "activeseg.sqlite")
    (shape_json,) = con.execute("SELECT shape_json FROM volume WHERE id = 1").fetchone()
    con.close()
    return tuple(json.loads(shape_json))


if __name__ == "__main__":
    main()
