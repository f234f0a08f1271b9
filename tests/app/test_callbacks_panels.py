"""Panel callbacks (active learning, training, results, export, effort): wiring, layout ids, logic."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pytest
from dash import no_update

from app import db
from app.config import Config
from app.services import projects
from app.server import create_app
from callbacks import active as cb_active
from callbacks import effort as cb_effort
from callbacks import export as cb_export
from callbacks import results as cb_results
from callbacks import training as cb_training
from layouts import ids_panels as pids
from ml.synthetic import make_em_volume

TINY = {"model": {"base": 4, "depth": 2}, "train": {"crop": 32, "batch_size": 2, "eval_every": 5}}


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Each test sees its own engines and volume caches (as after a restart)."""
    yield
    db.forget_all()
    projects.forget_caches()


@pytest.fixture
def env(tmp_path):
    cfg = Config(workspace=tmp_path / "ws", demo="none", device="cpu", extra=TINY)
    pid = projects.create_project(cfg, "p")["id"]
    raw, gt = make_em_volume((2, 64, 64), seed=2)
    vol = projects.add_volume_from_array(cfg, pid, "syn", raw, voxel_size=(40, 5, 5), ground_truth=gt)
    return SimpleNamespace(config=cfg, pid=pid, vol=vol, gt=gt, store=projects.label_store(cfg, vol["id"]))


def _ids(component) -> list:
    """Every string id in a component tree."""
    out = []
    stack = [component]
    while stack:
        c = stack.pop()
        if isinstance(c, (list, tuple)):
            stack.extend(c)
            continue
        if getattr(c, "id", None) is not None and isinstance(c.id, str):
            out.append(c.id)
        children = getattr(c, "children", None)
        if children is not None and not isinstance(children, str):
            stack.append(children)
    return out


def _constant_ids() -> list[str]:
    return [v for k, v in vars(pids).items() if k.isupper() and not k.endswith("_TYPE")]


def test_app_registers_panel_callbacks_and_page_ids_are_unique(env):
    app = create_app(env.config)
    outputs = " ".join(app.callback_map)
    for cid in (pids.AL_QUEUE, pids.AL_ROUND, pids.TR_LIVE, pids.TR_VERSIONS, pids.OBJ_TABLE, pids.OBJ_MESH,
                pids.EXP_DOWNLOAD, pids.EFF_ROUNDS, pids.NAV_REQUEST, pids.SEG_DONE):
        assert cid in outputs, cid
    page_ids = _ids(app.layout())
    assert len(page_ids) == len(set(page_ids)), "duplicate component ids on the page"
    missing = set(_constant_ids()) - set(page_ids)
    assert not missing, f"ids declared but not in the page: {missing}"


def test_progress_adapter_and_outcome_text():
    seen = []
    cb_active.progress_adapter(seen.append)(3, 4, {"phase": "x"})
    assert seen == [(75, "75%")]
    assert cb_active.progress_adapter(None) is None
    from app.jobs import JobOutcome

    assert cb_active.outcome_text(JobOutcome(1, "failed", error="boom"), "ok") == "Failed: boom"
    assert cb_active.outcome_text(JobOutcome(1, "cancelled"), "ok") == "Cancelled."
    assert cb_active.outcome_text(JobOutcome(1, "done"), "ok") == "ok"


def test_suggest_queue_skip_and_goto(env):
    assert cb_active.run_suggest(env.config, None, "entropy", 2, 32)[1] == "Select a volume first."
    round_id, status, note, note_open = cb_active.run_suggest(env.config, env.vol, "entropy", 3, 32)
    assert isinstance(round_id, int) and "3 patches" in status and note_open and "No trained model" in note
    items, shown = cb_active.queue_view(env.config, env.vol)
    assert shown == round_id and len(items) == 3
    rows = cb_active.active_round_rows(env.config, round_id)
    assert f"/thumbs/{rows[0]['id']}.png" in str(items[0])
    cb_active.queue_view(env.config, env.vol, skip_id=rows[0]["id"])
    assert cb_active.active_round_rows(env.config, round_id)[0]["status"] == "skipped"
    nav = cb_active.goto_suggestion(env.config, rows[1]["id"])
    assert nav["vid"] == env.vol["id"] and nav["z"] == rows[1]["z"]
    assert cb_active.goto_suggestion(env.config, None) is no_update
    assert cb_active.strategy_help("entropy")


def test_failed_job_is_reported_not_raised(env):
    round_id, status, _, _ = cb_active.run_suggest(env.config, env.vol, "entropy", 3, 4096)
    assert round_id is no_update and status.startswith("Failed: Patch size")


def test_training_views(env):
    assert cb_training.run_training(env.config, None, "new", None, 1, 1e-3)[0] == "Select a project first."
    assert "Pick the version" in cb_training.run_training(env.config, env.pid, "continue", None, 1, 1e-3)[0]
    text, _ = cb_training.run_training(env.config, env.pid, "new", None, 1, 1e-3)
    assert text.startswith("Failed: Nothing is labeled")
    g = env.gt[0, :32, :32]
    env.store.paint(0, g == 0, 1)
    env.store.paint(0, g > 0, 2)
    text, job_id = cb_training.run_training(env.config, env.pid, "new", None, 1, 3e-3)
    assert "trained" in text and "activated" in text
    fig, key = cb_training.live_view(env.config, env.pid, None)
    assert key[0] == job_id and key[1] == "done" and len(fig.data) >= 1
    assert cb_training.live_view(env.config, env.pid, key) == (no_update, no_update)
    rows, selected, options, value, eff, gt_note, _ = cb_training.versions_view(env.config, env.pid, False, [], [])
    assert len(rows) == 1 and rows[0]["active"] and value == rows[0]["id"] and options[0]["value"] == rows[0]["id"]
    assert "ground truth" in gt_note and len(eff.data) == 2     # val IoU and GT IoU curves


def test_results_and_export_views_without_segmentation(env):
    rows, summary, seg_id = cb_results.objects_view(env.config, env.vol)
    assert rows == [] and seg_id is None and "No objects" in str(summary)
    assert "segment and post-process" in str(cb_results.mesh_view(env.config, None, 10).layout.annotations)
    assert cb_results.goto_object(env.config, None, {"row_id": 1}) is no_update
    status = cb_results.run_segment(env.config, env.vol, False, 0.5, 0, False)[0]
    assert status.startswith("Failed: No trained model")
    assert cb_export.format_choice("objects", "tiff") == ([{"label": "CSV", "value": "csv"}], "csv")
    assert cb_export.format_choice("instances", "nrrd")[1] == "nrrd"
    data, status = cb_export.run_export(env.config, env.vol, "instances", "tiff")
    assert data is no_update and "No segmentation yet" in status


def test_effort_export_downloads_csv(env):
    data, status = cb_export.run_export(env.config, env.vol, "effort", "csv")
    assert status.startswith("Exported") and data["filename"].endswith(".csv")
    text = base64.b64decode(data["content"]).decode() if data.get("base64") else data["content"]
    assert text.splitlines()[0].startswith("suggestion_id,round_id")


def test_effort_view(env):
    cb_active.run_suggest(env.config, env.vol, "random", 2, 32)
    env.store.paint(0, np.ones((4, 4), bool), 1, y0=0, x0=0)
    rounds, patches, fig = cb_effort.effort_view(env.config, env.pid)
    assert len(rounds) == 1 and rounds[0]["n_patches"] == 2 and len(patches) == 2
    assert len(fig.data) == 2


def test_object_table_row_click_navigates(env):
    from app.db import session_scope
    from app.models import Segmentation
    from app.workspace import Workspace
    from ml.objects import object_table

    inst = np.zeros((2, 64, 64), np.int32)
    inst[1, 10:20, 30:50] = 1
    ws = Workspace(env.config.workspace)
    with session_scope(env.config) as s:
        row = Segmentation(volume_id=env.vol["id"], summary_json='{"count": 1, "total_volume_nm3": 200000.0, '
                                                                  '"mean_volume_nm3": 200000.0}')
        s.add(row)
        s.flush()
        row.instances_path = str(projects.write_zarr(ws.instances_path(row.id), inst))
        row.table_path = str(ws.segmentation_dir(row.id) / "objects.csv")
        object_table(inst, (40, 5, 5)).to_csv(row.table_path, index=False)
        seg_id = row.id
    rows, summary, shown = cb_results.objects_view(env.config, env.vol)
    assert shown == seg_id and [r["id"] for r in rows] == [1] and "µm³" in str(summary)
    nav = cb_results.goto_object(env.config, shown, {"row": 0, "column": 0, "row_id": 1})
    assert (nav["z"], nav["y0"], nav["y1"], nav["x0"], nav["x1"]) == (1, 10, 20, 30, 50)
    fig = cb_results.mesh_view(env.config, shown, 5)
    assert fig.data[0].type == "mesh3d" and len(fig.data[0].i) > 0

