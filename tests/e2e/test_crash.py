"""Crashes lose nothing (issue 9): ``kill -9`` of the server mid-work, then a restart on the same port.

Driven through the app's own Dash callback endpoint (the requests the page sends), so the
training runs in a job process the server forked, exactly as for a user. Checked: every
acknowledged stroke is stored; the killed server's port is free at once and its job process
gone within seconds; after the restart the job says why it ended, every version row has its
checkpoint, and training starts again.
"""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from layouts import ids
from layouts import ids_panels as pids
from tests.e2e import procs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

STROKES = [("M20,40L80,40", 1), ("M20,200L80,200", 1), ("M150,40L210,40", 2), ("M150,200L210,200", 2)]
BRUSH, Z = 6, 2
GONE_WITHIN_S = 8.0      # job process after the server's death: watch poll + the job's next cancel check


class DashClient:
    """Posts callbacks to ``/_dash-update-component`` like the page does (found by an input)."""

    def __init__(self, url: str):
        self.url = url
        self.deps = self._request("/_dash-dependencies")

    def _request(self, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def call(self, trigger: str, value, state: dict) -> dict:
        dep = next(d for d in self.deps if any(f"{i['id']}.{i['property']}" == trigger for i in d["inputs"]))
        out = dep["output"]
        outputs = [dict(zip(("id", "property"), o.rsplit(".", 1))) for o in out.strip(".").split("...")]
        return self._request("/_dash-update-component", {
            "output": out, "outputs": outputs if out.startswith("..") else outputs[0],
            "inputs": [{**i, "value": value if f"{i['id']}.{i['property']}" == trigger else None}
                       for i in dep["inputs"]],
            "state": [{**s, "value": state.get(f"{s['id']}.{s['property']}")} for s in dep["state"]],
            "changedPropIds": [trigger]})


def _start(workspace: Path, log_dir: Path, processes, port: int, name: str) -> tuple[procs.Proc, DashClient]:
    cmd = [procs.PYTHON, "-m", "app", "--workspace", str(workspace), "--port", str(port), "--demo", "synthetic"]
    proc = processes.add(procs.Proc(name, cmd, procs.app_env(workspace), log_dir))
    url = f"http://127.0.0.1:{port}"
    procs.wait_until(lambda: procs.http_ok(url + "/healthz"), 90, f"{name} at {url}", (proc,))
    return proc, DashClient(url)


def _kill9(proc: procs.Proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)     # the server only, not its process group
    proc.popen.wait(10)


def _listening(port: int) -> bool:
    """Any socket (any process) in LISTEN state on ``port`` (/proc/net/tcp*, state 0A)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if int(local.rsplit(":", 1)[1], 16) == port and state == "0A":
                    return True
    return False


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"   # a zombie waits for a reaper only
    except FileNotFoundError:
        return True


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def _train(client: DashClient, project_id: int, epochs: int) -> dict:
    return client.call(f"{pids.TR_TRAIN}.n_clicks", 1, {
        f"{ids.PROJECT_STORE}.data": project_id, f"{pids.TR_MODE}.value": "new", f"{pids.TR_PARENT}.value": None,
        f"{pids.TR_EPOCHS}.value": epochs, f"{pids.TR_LR}.value": 0.001, f"{pids.TR_BUDGET}.value": "epochs"})


def test_kill_9_loses_no_stroke_frees_the_port_and_stops_the_job(workspace, processes, tmp_path):
    from app import jobs
    from app.config import Config
    from app.services import labels, projects, training
    from ml.labels.rasterize import rasterize_path_bbox

    cfg = Config(workspace=workspace, demo="none")
    project = projects.list_projects(cfg)[0]
    vid = projects.list_volumes(cfg, project["id"])[0]["id"]
    port = procs.free_port()
    server, client = _start(workspace, tmp_path, processes, port, "app-1")

    # (a) strokes the server acknowledged survive kill -9
    view = {f"{ids.VIEW_STATE}.data": {"vid": vid, "plane": "xy", "index": Z}, f"{ids.BRUSH}.value": BRUSH}
    rev = 0
    for path, value in STROKES:
        reply = client.call(f"{ids.GRAPH}.relayoutData", {"shapes": [{"type": "path", "path": path}]},
                            {**view, f"{ids.PAINT_VALUE}.data": value, f"{ids.LABELS_REV}.data": rev})
        rev += 1
        assert reply["response"][ids.LABELS_REV]["data"] == rev, reply    # acknowledged
    _kill9(server)
    server, client = _start(workspace, tmp_path, processes, port, "app-2")
    store = projects.label_store(cfg, vid)
    events = [e for e in labels.events(cfg, vid) if e["kind"] == "stroke"]
    assert [e["value"] for e in events] == [v for _, v in STROKES], events
    for path, value in STROKES:
        crop, y0, x0 = rasterize_path_bbox(path, store.shape[1:], BRUSH)
        got = store.read(Z, y0, y0 + crop.shape[0], x0, x0 + crop.shape[1])
        assert (got[crop] == value).all(), f"stroke {path} lost pixels after kill -9"

    # (b) kill -9 mid-training: port free at once, job process gone within seconds
    handle = _train(client, project["id"], epochs=200)
    assert "job" in handle, handle

    def training_job():
        job = _latest_train(cfg, project["id"])
        return job if job and job["status"] == "running" and job["progress"] >= 2 else None

    procs.wait_until(training_job, 90, "the training job to be training", (server,))
    job = training_job()
    assert _ppid(job_pid := _row_pid(cfg, job["id"])) == server.pid, "the job does not run in a forked process"
    _kill9(server)
    killed = time.monotonic()
    assert not _listening(port), "a process still listens on the killed server's port"
    procs.wait_until(lambda: _gone(job_pid), GONE_WITHIN_S, "the job process to stop after the server died")
    print(f"job process gone {time.monotonic() - killed:.1f} s after kill -9")

    server, client = _start(workspace, tmp_path, processes, port, "app-3")
    job = jobs.get_job(cfg, job["id"])
    assert job["status"] == "failed" and job["error"] == jobs.SERVER_STOPPED, job
    versions = training.list_versions(cfg, project["id"])
    for v in versions:
        assert Path(v["path"]).is_file(), f"version {v['id']} has no checkpoint at {v['path']}"
    # the job stopped at a cancel check (it ended before STOP_GRACE_S): its best weights are kept, inactive
    assert [(v["cancelled"], v["active"]) for v in versions] == [(True, False)], versions

    # training starts again on the restarted server
    assert "job" in _train(client, project["id"], epochs=1)
    procs.wait_until(lambda: (_latest_train(cfg, project["id"]) or {})["id"] > job["id"], 60,
                     "a new training job", (server,))
    procs.wait_until(lambda: _latest_train(cfg, project["id"])["status"] in ("running", "done"), 60,
                     "the new training job to run", (server,))


def _latest_train(cfg, project_id: int) -> dict | None:
    """The newest training job row, read without reconciling (list_jobs would mark stale jobs itself)."""
    from app import jobs
    from app.db import session_scope
    from app.models import Job

    with session_scope(cfg) as s:
        row = s.query(Job).filter(Job.kind == "train", Job.project_id == project_id).order_by(Job.id.desc()).first()
        return jobs.job_dict(row) if row else None


def _row_pid(cfg, job_id: int) -> int:
    from app.db import session_scope
    from app.models import Job

    with session_scope(cfg) as s:
        return int(s.get(Job, job_id).pid)
