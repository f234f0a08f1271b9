"""Panel callbacks (active learning, training, results, export, effort): wiring, layout ids, logic."""
from __future__ import annotations

import base64

import numpy as np
import pytest
from dash import no_update

from app.services import labels
from app.server import create_app
from callbacks import active as cb_active
from callbacks import effort as cb_effort
from callbacks import export as cb_export
from callbacks import results as cb_results
from callbacks import training as cb_training
from layouts import ids_panels as pids
from tests.app.envs import add_segmentation, paint_ground_truth, synthetic_env


@pytest.fixture
def env(tmp_path):
    return synthetic_env(tmp_path / "ws", (2, 64, 64), seed=2)


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


def test_the_live_curve_redraws_when_a_training_job_ends_not_only_at_the_next_poll(env):
    """A poll answered later than its interval is dropped by Dash (a newer one supersedes it), so the
    job's end marker drives the live figure too."""
    app = create_app(env.config)
    live = next(cb for key, cb in app.callback_map.items() if f"{pids.TR_LIVE}.figure" in key)
    inputs = {(i["id"], i["property"]) for i in live["inputs"]}
    assert {(pids.TR_POLL, "n_intervals"), (pids.TR_DONE, "data")} <= inputs


def test_progress_adapter_and_outcome_text():
    seen = []
    cb_active.progress_adapter(seen.append)(3, 4, {"phase": "x"})
    assert seen == [(75, "75% · x")]                     # the phase, when it is not plain training
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
    fig, title, key = cb_training.live_view(env.config, env.pid, None)      # page load, no job yet
    assert title == "Training curves" and "no training run yet" in str(fig.layout.annotations)
    assert cb_training.live_view(env.config, env.pid, key) == (no_update, no_update, no_update)
    assert cb_training.run_training(env.config, None, "new", None, 1, 1e-3)[0] == "Select a project first."
    assert "Pick the version" in cb_training.run_training(env.config, env.pid, "continue", None, 1, 1e-3)[0]
    text, _ = cb_training.run_training(env.config, env.pid, "new", None, 1, 1e-3)
    assert text.startswith("Failed: Nothing is labeled")
    paint_ground_truth(env, [0], 32)
    text, job_id = cb_training.run_training(env.config, env.pid, "new", None, 1, 3e-3)
    assert "trained (20 steps) and activated" in text and "quality not estimated" in text   # one small square
    fig, title, key = cb_training.live_view(env.config, env.pid, None)
    assert key[0] == job_id and key[1] == "done" and len(fig.data) >= 1
    assert title == f"Training job {job_id}: done" and not fig.layout.title.text   # heading above, not in the plot
    assert cb_training.live_view(env.config, env.pid, key) == (no_update, no_update, no_update)
    rows, selected, options, value, eff, gt_note, _ = cb_training.versions_view(env.config, env.pid, False, [], [])
    assert len(rows) == 1 and rows[0]["active"] and value == rows[0]["id"] and options[0]["value"] == rows[0]["id"]
    assert rows[0]["est_iou_text"] in options[0]["label"] and len(rows[0]["created_short"]) == len("MM-DD HH:MM")
    assert "ground truth" in gt_note and len(eff.data) == 2     # estimated and GT IoU curves
    assert gt_note.startswith(f"v{rows[0]['id']} (active): quality not estimated: ")


def test_training_status_and_effort_note_read_naturally(env):
    from app.jobs import JobOutcome

    def status(metrics):
        outcome = JobOutcome(1, "done", result={"model_id": 3, "metrics": {"steps": 1, **metrics}})
        return cb_training.training_status(outcome)

    quality = {"iou": 0.4, "basis": {"regions": 2, "pixels": 5000, "foreground": 900, "boundary": 700}}
    assert status({"val_iou": 0.9, "gt_iou": 0.25, "quality": quality}) == (
        "Model 3 trained (1 step) and activated; estimated IoU 0.40 (on 2 held-out regions, 5,000 px "
        "(700 at boundaries)); IoU vs ground truth 0.250.")
    text = status({"val_iou": 1.0, "quality": {"iou": None, "reason": "no labels were held out"}})
    assert text == "Model 3 trained (1 step) and activated; quality not estimated: no labels were held out."
    assert "1.0" not in text and "ground truth" not in text     # the flattering held-out IoU is not the headline
    assert cb_training.effort_note(env.config, env.pid) == ""
    round_id = cb_active.run_suggest(env.config, env.vol, "random", 1, 32)[0]
    patch = cb_active.active_round_rows(env.config, round_id)[0]
    z, y, x = patch["z"], patch["y"], patch["x"]
    labels.apply_stroke(env.config, env.vid, z, f"M{x + 2},{y + 2}L{x + 8},{y + 2}", 1, 3)
    note = cb_training.effort_note(env.config, env.pid)
    assert note.startswith("Effort: 1 suggested patch labeled over 1 round, 1 stroke inside them, "), note


def test_um3_is_offered_only_where_the_voxel_size_is_known():
    """A min size in µm³ on a volume without a voxel size could only fail: greyed, with the reason."""
    options, unit = cb_results.unit_choices({"id": 1, "voxel_size": [40.0, 5.0, 5.0]}, "um3")
    assert unit == "um3" and not any(o.get("disabled") for o in options)
    options, unit = cb_results.unit_choices({"id": 2, "voxel_size": None}, "um3")
    assert unit == "voxels" and [o["value"] for o in options if o.get("disabled")] == ["um3"]
    assert "voxel size" in next(o["label"] for o in options if o["value"] == "um3")
    assert cb_results.unit_choices(None, "voxels")[1] == "voxels"


def test_results_and_export_views_without_segmentation(env):
    rows, summary, seg_id = cb_results.objects_view(env.config, env.vol)
    assert rows == [] and seg_id is None and "No objects" in str(summary)
    assert "segment and post-process" in str(cb_results.mesh_view(env.config, None, 10).layout.annotations)
    assert cb_results.goto_object(env.config, None, {"row_id": 1}) is no_update
    status = cb_results.run_segment(env.config, env.vol, False, {"threshold": 0.5})[0]
    assert status.startswith("Failed: No trained model")
    assert cb_export.format_choice("objects", "tiff") == ([{"label": "CSV", "value": "csv"}], "csv")
    assert cb_export.format_choice("instances", "nrrd")[1] == "nrrd"
    data, status, link = cb_export.run_export(env.config, env.vol, "instances", "tiff")
    assert data is no_update and "No segmentation yet" in status and link is None


def test_effort_export_downloads_csv_and_links_it(env):
    data, status, link = cb_export.run_export(env.config, env.vol, "effort", "csv", prefix="/app/")
    name = data["filename"]
    text = base64.b64decode(data["content"]).decode() if data.get("base64") else data["content"]
    assert text.splitlines()[0].startswith("suggestion_id,round_id")
    assert name.endswith(".csv") and status == f"Exported {name} ({len(text.encode())} bytes)."
    assert link.href == f"/app/exports/{name}" and link.download == name and "bytes)" in link.children


def test_large_export_is_offered_only_as_a_link(env, monkeypatch):
    monkeypatch.setattr(cb_export, "INLINE_LIMIT_MB", 0)
    data, status, link = cb_export.run_export(env.config, env.vol, "effort", "csv")
    assert data is no_update and "too large to send through the page" in status
    assert link.href.startswith("/exports/") and link.href.endswith(".csv")


def test_effort_view(env):
    cb_active.run_suggest(env.config, env.vol, "random", 2, 32)
    env.store.paint(0, np.ones((4, 4), bool), 1, y0=0, x0=0)
    rounds, patches, fig = cb_effort.effort_view(env.config, env.pid)
    assert len(rounds) == 1 and rounds[0]["n_patches"] == 2 and len(patches) == 2
    assert len(fig.data) == 2


def test_object_table_row_click_navigates(env):
    inst = np.zeros((2, 64, 64), np.int32)
    inst[1, 10:20, 30:50] = 1
    seg_id = add_segmentation(env, inst, {"count": 1, "total_volume_nm3": 200000.0, "mean_volume_nm3": 200000.0})
    rows, summary, shown = cb_results.objects_view(env.config, env.vol)
    assert shown == seg_id and [r["id"] for r in rows] == [1] and "µm³" in str(summary)
    nav = cb_results.goto_object(env.config, shown, {"row": 0, "column": 0, "row_id": 1})
    assert (nav["z"], nav["y0"], nav["y1"], nav["x0"], nav["x1"]) == (1, 10, 20, 30, 50)
    fig = cb_results.mesh_view(env.config, shown, 5)
    assert fig.data[0].type == "mesh3d" and len(fig.data[0].i) > 0

