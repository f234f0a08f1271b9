"""Jobs on real Celery workers: z-chunks spread over two workers with the same result, and a worker
killed mid-job leaves its job failed with the reason, after which a retry finishes.

redis-server, two prefork workers (``celery -A app.worker``) and gunicorn (``app.wsgi``) with
APP_JOB_BACKEND=celery on loopback: the lab server's three roles without Docker, sharing one workspace as a lab's machines share a data
mount. A segmentation started through the REST API runs its coordinator in one worker; the
other worker predicts z-chunks. The stored prediction must equal, bit for bit, what one process
predicts with the same model (``ml.infer.predict_volume``).
"""
from __future__ import annotations

import json
import re
import signal
import time
import urllib.request

import numpy as np
import pytest

from tests.e2e import procs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def _api(url: str, method: str = "GET", body: dict | None = None) -> dict:
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def _add_model(workspace):
    """An active model version (untrained weights: the comparison needs a fixed model, not a good one)."""
    from app.config import Config
    from app.db import session_scope
    from app.models import ModelVersion
    from app.services import factory
    from app.workspace import Workspace
    from ml.checkpoint import save_checkpoint

    config = Config.from_env(env=procs.app_env(workspace))
    vid, _ = procs.demo_ground_truth(workspace)
    from app.services import projects

    pid = projects.volume_info(config, vid)["project_id"]
    model = factory.new_model(config, 2, seed=3)
    with session_scope(config) as s:
        row = ModelVersion(project_id=pid, path="", active=True)
        s.add(row)
        s.flush()
        path = Workspace(config.workspace).model_path(row.id)
        save_checkpoint(path, model, ["background", "mitochondria"])
        row.path = str(path)
    return config, vid


def _chunks_done(worker: procs.Proc) -> int:
    return len(re.findall(r"activeseg\.predict_chunk\[[0-9a-f-]+\] succeeded in [\d.]+s: 'done'", worker.log(10**7)))


def test_segmentation_spreads_z_chunks_over_two_workers_with_the_same_result(tmp_path, processes):
    """Twelve z-chunks: the coordinator's worker, busy, may hold one sent chunk (prefetch 1); the rest reach
    the idle worker. Enough slices that the coordinator cannot finish them all before the idle worker
    starts (with four small ones, on a loaded machine, it did: the late tasks then had nothing to do)."""
    from app.services import projects, training
    from ml.infer import open_prediction, predict_volume

    workspace = procs.make_workspace(tmp_path / "ws", (48, 256, 256))

    config, vid = _add_model(workspace)
    _, redis_url = procs.start_redis(tmp_path, processes.add)
    workers = [procs.start_celery_worker(workspace, redis_url, tmp_path, processes.add, node=f"w{i}") for i in (1, 2)]
    server, url = procs.start_gunicorn(workspace, tmp_path, processes.add,
                                       env_extra={"APP_JOB_BACKEND": "celery", "REDIS_URL": redis_url})
    job = _api(f"{url}/api/volumes/{vid}/segment", "POST", {"threshold": 0.5})
    end = time.monotonic() + 300
    while job["status"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < end, f"segmentation job still {job['status']}"
        for p in (server, *workers):
            p.check_alive()
        time.sleep(1)
        job = _api(f"{url}/api/jobs/{job['id']}")
    assert job["status"] == "done", job
    done = [_chunks_done(w) for w in workers]
    assert sum(done) >= 1, f"no z-chunk ran as a task on a worker: {done}"

    info = projects.volume_info(config, vid)
    model, _ = training.load_model(config, job["result"]["model_id"])
    reference = predict_volume(model, projects.open_volume(config, vid), tmp_path / "reference.zarr",
                               lo=info["lo"], hi=info["hi"], classes=["background", "mitochondria"])
    stored = open_prediction(job["result"]["pred_path"])
    assert np.array_equal(np.asarray(stored["prob"][:]), np.asarray(open_prediction(reference)["prob"][:]))
    import io

    import pandas as pd

    table = urllib.request.urlopen(f"{url}/api/volumes/{vid}/objects.csv", timeout=30).read().decode()
    assert len(pd.read_csv(io.StringIO(table))) == job["result"]["summary"]["count"]
    print(f"\nz-chunk tasks done per worker: {done}")


def _wait_job(url: str, job_id: int, states: tuple[str, ...], timeout: float, procs_=()) -> dict:
    end = time.monotonic() + timeout
    while True:
        job = _api(f"{url}/api/jobs/{job_id}")
        if job["status"] in states:
            return job
        assert time.monotonic() < end, f"job {job_id} still {job['status']} ({job['progress']}/{job['total']})"
        for p in procs_:
            p.check_alive()
        time.sleep(0.5)


def test_a_worker_killed_mid_job_leaves_it_failed_and_a_retry_finishes(workspace, processes, tmp_path):
    from app.services import projects

    config, vid = _add_model(workspace)
    _, gt = procs.demo_ground_truth(workspace)
    store = projects.label_store(config, vid)
    for z in (2, 5):                                  # labels to train on
        store.paint(z, gt[z] == 0, 1)
        store.paint(z, gt[z], 2)
    pid = projects.volume_info(config, vid)["project_id"]
    _, redis_url = procs.start_redis(tmp_path, processes.add)
    worker = procs.start_celery_worker(workspace, redis_url, tmp_path, processes.add, node="doomed")
    server, url = procs.start_dev_server(workspace, tmp_path, processes.add,
                                         env_extra={"APP_JOB_BACKEND": "celery", "REDIS_URL": redis_url})
    long = _api(f"{url}/api/projects/{pid}/train", "POST", {"budget": None, "epochs": 1000})
    end = time.monotonic() + 120
    while (job := _api(f"{url}/api/jobs/{long['id']}"))["progress"] == 0:
        assert time.monotonic() < end and job["status"] in ("queued", "running"), job
        time.sleep(0.3)
    worker._signal(signal.SIGKILL)                    # the machine's worker dies, pool and all
    failed = _wait_job(url, long["id"], ("failed", "done", "cancelled"), 60, (server,))
    assert failed["status"] == "failed" and "interrupted" in failed["error"], failed
    print(f"\nafter the kill: {failed['status']}: {failed['error']}")

    procs.start_celery_worker(workspace, redis_url, tmp_path, processes.add, node="spare")
    retry = _api(f"{url}/api/projects/{pid}/train", "POST", {"budget": None, "epochs": 1})
    assert _wait_job(url, retry["id"], ("failed", "done", "cancelled"), 240, (server,))["status"] == "done"


def test_slice_previews_are_made_by_a_worker_not_the_web(workspace, processes, tmp_path, monkeypatch):
    """With Celery the web asks a worker for a new model's slice preview; no worker: no overlay, no hang."""
    from app import background
    from app.services import previews, projects

    config, vid = _add_model(workspace)
    mid = [m for m in _model_ids(config, vid)][-1]
    _, redis_url = procs.start_redis(tmp_path, processes.add)
    web = config.with_(job_backend="celery", redis_url=redis_url)
    monkeypatch.setattr(background, "PREVIEW_WAIT_S", 3.0)
    assert previews.slice_prob(web, vid, mid, 2) is None            # no worker up: empty overlay, quickly
    monkeypatch.setattr(background, "PREVIEW_WAIT_S", 60.0)
    worker = procs.start_celery_worker(workspace, redis_url, tmp_path, processes.add, node="previews")
    prob = previews.slice_prob(web, vid, mid, 2)
    assert prob is not None and prob.shape[1:] == tuple(projects.volume_info(config, vid)["shape"][1:])
    assert re.search(r"activeseg\.preview\[[0-9a-f-]+\] succeeded", worker.log(10**6)), worker.log(3000)


def _model_ids(config, vid) -> list[int]:
    from app.services import projects, training

    return [v["id"] for v in reversed(training.list_versions(config, projects.volume_info(config, vid)["project_id"]))]
