"""Viewer and painting logic: figure geometry, URLs (no base64), zoom-preserving patches, strokes -> pixels."""
from __future__ import annotations

import json

import numpy as np
import pytest
from dash import no_update

from app.db import session_scope
from app.models import ALRound, Suggestion
from app.services import labels, projects
from callbacks import painting, viewer
from layouts import ids
from layouts import viewer as view

OPS = {"labels": 0.5, "prediction": 0.0, "uncertainty": 0.3, "gt": 0.0}


def info_of(config, volume):
    info = projects.volume_info(config, volume["id"])
    info["vmin"], info["vmax"] = projects.display_range(config, volume["id"])
    return info


def test_new_volume_view_geometry_urls_and_defaults(config, volume):
    out = viewer.build_view("", info_of(config, volume), "xy", ids.VOLUME_STORE, None, None, None, OPS)
    fig, vid = out["figure"], volume["id"]
    assert out["index"] == 2 and out["max"] == 3 and out["contrast"] == [volume["lo"], volume["hi"]]
    raw_img, lab, pred, unc, gt, objects = fig["layout"]["images"]
    assert raw_img["source"].startswith(f"/tiles/{vid}/xy/2.png?lo=")
    assert (raw_img["sizex"], raw_img["sizey"], raw_img["x"], raw_img["y"]) == (64, 48, -0.5, -0.5)
    assert lab["source"] == f"/overlay/{vid}/labels/xy/2.png?rev=0" and lab["opacity"] == 0.5
    assert pred["source"] == "" and not pred["visible"] and unc["source"].startswith(f"/overlay/{vid}/uncertainty/")
    assert "base64" not in json.dumps(fig)
    assert fig["layout"]["xaxis"]["range"] == [-0.5, 63.5] and fig["layout"]["yaxis"]["range"] == [47.5, -0.5]
    assert len({(i["x"], i["y"], i["sizex"], i["sizey"]) for i in fig["layout"]["images"]}) == 6   # plotly keys


def test_orthogonal_plane_has_true_aspect_and_is_view_only(config, volume):
    info = info_of(config, volume)
    out = viewer.build_view("", info, "xz", ids.PLANE, None, None, None, OPS)
    lay = out["figure"]["layout"]
    assert out["max"] == 47 and out["index"] == 24
    assert (lay["images"][0]["sizex"], lay["images"][0]["sizey"]) == (64, 4)
    assert lay["yaxis"]["scaleratio"] == pytest.approx(40 / 5) and lay["dragmode"] == "pan"
    assert "xy plane" in out["note"]


def test_slice_changes_keep_zoom_and_only_swap_urls(config, volume):
    info = info_of(config, volume)
    out = viewer.build_view("/app", info, "xy", ids.VOLUME_STORE, None, None, None, OPS)
    patch, state, label = viewer.slice_patch("/app", out["state"], 3, [10, 200], OPS, labels_rev=4)
    ops = patch.to_plotly_json()["operations"]
    sets = {tuple(o["location"]): o["params"]["value"] for o in ops if o["operation"] == "Assign"}
    assert sets[("layout", "images", 0, "source")] == f"/app/tiles/{volume['id']}/xy/3.png?lo=10&hi=200"
    assert sets[("layout", "images", 1, "source")] == f"/app/overlay/{volume['id']}/labels/xy/3.png?rev=4"
    assert not any(loc[:2] == ("layout", "uirevision") for loc in sets) and label == "z 3"
    assert state["uirev"] == out["state"]["uirev"] and state["index"] == 3
    # same volume again (e.g. voxel size saved): slice and contrast stay
    again = viewer.build_view("", info, "xy", ids.VOLUME_STORE, state, 3, [10, 200], OPS)
    assert again["index"] == 3 and again["contrast"] == [10.0, 200.0]
    assert again["figure"]["layout"]["uirevision"] == out["figure"]["layout"]["uirevision"]


def test_navigation_request_zooms_outlines_and_resets_zoom_revision(config, volume):
    info = info_of(config, volume)
    first = viewer.build_view("", info, "xz", ids.VOLUME_STORE, None, None, None, OPS)
    nav = {"z": 1, "y0": 8, "y1": 24, "x0": 16, "x1": 32, "outline": True}
    out = viewer.build_view("", info, "xz", "nav", first["state"], 5, None, OPS, nav=nav)
    lay = out["figure"]["layout"]
    assert out["plane"] == "xy" and out["index"] == 1 and lay["uirevision"] != first["figure"]["layout"]["uirevision"]
    assert lay["xaxis"]["range"] == [12 - 0.5, 36 - 0.5] and lay["yaxis"]["range"] == [28 - 0.5, 4 - 0.5]
    (shape,) = lay["shapes"]
    assert (shape["x0"], shape["x1"], shape["y0"], shape["y1"]) == (15.5, 31.5, 7.5, 23.5) and not shape["editable"]
    assert viewer.outline_for(out["state"], "xy", 2) == []   # only on its own slice


def test_window_numbers_format_like_the_prefetch_script():
    assert [viewer.fmt_num(v) for v in (63.0, 12.5, 0.123456, 65535)] == ["63", "12.5", "0.1235", "65535"]


def stroke(path: str) -> dict:
    return {"shapes": [{"type": "path", "path": path, "line": {"color": "#ff7f0e", "width": 4}}]}


@pytest.fixture
def state(config, volume):
    return viewer.build_view("", info_of(config, volume), "xy", ids.VOLUME_STORE, None, None, None, OPS)["state"]


@pytest.mark.parametrize("r, c", [(0, 0), (10, 20), (47, 63), (5, 33)])
def test_a_click_at_pixel_r_c_labels_exactly_r_c(config, volume, state, r, c):
    patch, rev, msg, is_open = painting.paint_from_relayout(config, stroke(f"M{c},{r}L{c},{r}"), state, 2, 1, 0)
    assert rev == 1 and not is_open
    lab = projects.label_store(config, volume["id"]).read_slice(state["index"])
    assert lab[r, c] == 2 and (lab > 0).sum() == 1


@pytest.mark.parametrize("x, y", [(20.3, 10.2), (19.7, 9.8), (20.49, 10.49)])
def test_an_off_centre_click_paints_its_nearest_pixel(config, volume, state, x, y):
    painting.paint_from_relayout(config, stroke(f"M{x},{y}L{x},{y}"), state, 2, 1, 0)
    lab = projects.label_store(config, volume["id"]).read_slice(state["index"])
    assert lab[10, 20] == 2                                       # the nearest pixel, always
    dist = [np.hypot(c - x, r - y) for r, c in np.argwhere(lab)]   # and only pixels under the dot
    assert max(dist) <= labels.MIN_BRUSH / 2


def test_stroke_is_saved_shape_removed_and_overlay_refreshed(config, volume, state):
    patch, rev, _, _ = painting.paint_from_relayout(config, stroke("M5,5L25,5"), state, 2, 3, 6)
    sets = {tuple(o["location"]): o["params"]["value"] for o in patch.to_plotly_json()["operations"]}
    assert sets[("layout", "shapes")] == [] and rev == 7
    assert sets[("layout", "images", 1, "source")].endswith("rev=7")
    lab = projects.label_store(config, volume["id"]).read_slice(state["index"])
    assert lab[4:7, 5:26].all() and lab[8].max() == 0   # 3 px wide
    assert labels.counts(config, volume["id"])[1]["pixels"] == int((lab == 2).sum())


def test_closed_path_fills_and_eraser_clears(config, volume, state):
    painting.paint_from_relayout(config, stroke("M10,10L30,10L30,30L10,30Z"), state, 1, 1, 0)
    store = projects.label_store(config, volume["id"])
    assert (store.read_slice(state["index"])[10:31, 10:31] == 1).all()
    painting.paint_from_relayout(config, {"shapes[0].path": "M15,15L25,15L25,25L15,25Z"}, state, 0, 1, 1)
    lab = store.read_slice(state["index"])
    assert (lab[15:26, 15:26] == 0).all() and lab[12, 12] == 1


def test_undo_reverts_the_newest_stroke_on_the_slice_in_view_and_says_what(config, volume, state):
    classes = projects.get_classes(config, volume["id"])
    painting.paint_from_relayout(config, stroke("M1,1L9,1"), state, 2, 1, 0)
    painting.paint_from_relayout(config, stroke("M1,3L9,3"), state, 2, 1, 1)
    other = dict(state, index=state["index"] + 1)
    painting.paint_from_relayout(config, stroke("M1,5L9,5"), other, 1, 1, 2)      # newest, on another slice
    rev, msg, is_open, colour = painting.undo_last(config, state, 3, classes)
    store = projects.label_store(config, volume["id"])
    lab = store.read_slice(state["index"])
    assert rev == 4 and lab[1, 1:10].all() and lab[3].max() == 0
    assert store.read_slice(other["index"])[5, 1:10].all(), "undo reached a slice the user does not see"
    assert msg == f"Undid a {classes[1]['name']} stroke on slice {state['index']} (9 px)." and colour == "info"
    painting.undo_last(config, state, 4, classes)
    assert painting.undo_last(config, state, 5, classes)[1:] == (
        f"Nothing to undo on slice {state['index']} (Undo works on the slice in view).", True, "warning")
    assert "xy" in painting.undo_last(config, dict(state, plane="xz"), 5, classes)[1]
    assert painting.undo_last(config, other, 5, classes)[0] == 6


def test_redo_paints_the_undone_stroke_of_the_slice_in_view_again(config, volume, state):
    classes = projects.get_classes(config, volume["id"])
    painting.paint_from_relayout(config, stroke("M1,1L9,1"), state, 2, 1, 0)
    painting.undo_last(config, state, 1, classes)
    store = projects.label_store(config, volume["id"])
    assert store.read_slice(state["index"])[1].max() == 0
    rev, msg, _, colour = painting.undo_last(config, state, 2, classes, redo=True)
    assert rev == 3 and store.read_slice(state["index"])[1, 1:10].all() and colour == "info"
    assert msg == f"Painted again a {classes[1]['name']} stroke on slice {state['index']} (9 px)."
    assert painting.undo_last(config, state, 3, classes, redo=True)[1].startswith("Nothing to redo")
    assert [e["kind"] for e in labels.events(config, volume["id"])] == ["stroke", "undo", "redo"]


def test_zoom_events_do_nothing_and_other_planes_refuse(config, volume, state):
    assert painting.paint_from_relayout(config, {"xaxis.range[0]": 3}, state, 2, 1, 0)[:2] == (no_update, no_update)
    side = dict(state, plane="xz")
    patch, rev, msg, is_open = painting.paint_from_relayout(config, stroke("M1,1L5,1"), side, 2, 1, 0)
    assert rev is no_update and is_open and "xy plane" in msg
    assert labels.counts(config, volume["id"])[1]["pixels"] == 0


def test_invalid_class_value_is_a_message(config, volume, state):
    _, rev, msg, is_open = painting.paint_from_relayout(config, stroke("M1,1L5,1"), state, 9, 1, 0)
    assert rev is no_update and is_open and "Pick a class" in msg


def test_stroke_inside_a_suggestion_marks_it_labeled(config, project, volume, state):
    with session_scope(config) as s:
        r = ALRound(project_id=project["id"], volume_id=volume["id"], strategy="entropy", k=2, patch_size=16)
        s.add(r)
        s.flush()
        inside = Suggestion(round_id=r.id, rank=0, z=state["index"], y=0, x=0, size=16)
        elsewhere = Suggestion(round_id=r.id, rank=1, z=state["index"], y=30, x=40, size=16)
        skipped = Suggestion(round_id=r.id, rank=2, z=state["index"], y=0, x=4, size=16, status="skipped")
        s.add_all([inside, elsewhere, skipped])
        s.flush()
        ids_ = (inside.id, elsewhere.id, skipped.id)
        round_id = r.id
    painting.paint_from_relayout(config, stroke("M2,2L8,2"), state, 2, 1, 0)
    painting.paint_from_relayout(config, stroke("M2,5L8,5"), state, 2, 1, 1)
    with session_scope(config) as s:
        a, b, c = (s.get(Suggestion, i) for i in ids_)
        assert (a.status, a.n_strokes) == ("labeled", 2) and a.first_stroke_at <= a.last_stroke_at
        assert (b.status, b.n_strokes) == ("todo", 0)
        assert (c.status, c.n_strokes, c.first_stroke_at) == ("skipped", 0, None)   # skipped stays untouched
        rnd = s.get(ALRound, round_id)
        assert rnd.started_at == a.first_stroke_at and rnd.finished_at is None       # one patch still to do
    ev = labels.events(config, volume["id"])          # the label store's log: both strokes, once each
    assert [e["kind"] for e in ev] == ["stroke"] * 2 and ev[0]["n_pixels"] == 7 and ev[0]["z"] == state["index"]


def test_rect_and_line_shapes_become_paths():
    assert labels.shape_to_path({"type": "rect", "x0": 1, "y0": 2, "x1": 3, "y1": 4}).endswith("Z")
    assert labels.shape_to_path({"type": "line", "x0": 1, "y0": 2, "x1": 3, "y1": 4}) == "M1.0,2.0L3.0,4.0"
    assert labels.new_strokes({"shapes": [{"type": "rect", "x0": 0, "y0": 0, "x1": 1, "y1": 1, "editable": False}]}) == []


def test_tool_choice_sets_dragmode_and_colour():
    classes = [{"name": "bg", "color": "#111111"}, {"name": "mito", "color": "#ff7f0e"}]
    assert painting.brush_style("stroke", "xy", 2, classes, 8) == {"dragmode": "drawopenpath", "color": "#ff7f0e",
                                                                   "width": 8.0}
    assert painting.brush_style("fill", "xy", 1, classes, 8)["dragmode"] == "drawclosedpath"
    assert painting.brush_style("fill", "xz", 1, classes, 8)["dragmode"] == "pan"
    assert painting.brush_style("stroke", "xy", 0, classes, 8)["color"] == painting.ERASER_COLOR
    assert painting.chosen_value(ids.ERASER, None, 1) == 0
    assert painting.chosen_value({"type": ids.CLASS_BUTTON_TYPE, "index": 1}, [1, None], None) == 1
    assert painting.chosen_value({"type": ids.CLASS_BUTTON_TYPE, "index": 1}, [None, None], None) is no_update


def test_class_buttons_use_class_colours():
    btns = view.class_buttons([{"name": "bg", "color": "#111111"}, {"name": "mito", "color": "#ff7f0e"}], 2)
    assert [b.id["index"] for b in btns] == [1, 2]
    assert btns[1].style["backgroundColor"] == "#ff7f0e" and btns[0].style["backgroundColor"] == "white"


def test_uncertainty_strip_has_one_bar_per_slice_and_marks_the_current_one():
    fig = view.uncertainty_strip([0.1, 0.4, 0.2, 0.05], current=2)
    (bars,) = fig.data
    assert list(bars.x) == [0, 1, 2, 3] and list(bars.y) == [0.1, 0.4, 0.2, 0.05]
    assert tuple(fig.layout.xaxis.range) == (-0.5, 3.5) and fig.layout.height == view.STRIP_HEIGHT
    (marker,) = fig.layout.shapes
    assert (marker.x0, marker.x1) == (1.5, 2.5)
    assert not fig.layout.xaxis.title.text and not fig.layout.yaxis.title.text


def test_uncertainty_strip_without_a_prediction_or_outside_xy_is_a_hint():
    fig, caption, disabled = viewer.strip_view(None, "xy", 3)
    assert not fig.data and view.STRIP_HINT in fig.layout.annotations[0].text and disabled and caption == ""
    data = {"values": [0.1, 0.4, 0.2], "model_id": 7, "worst": 1, "vid": 1}
    fig, caption, disabled = viewer.strip_view(data, "yz", 3)
    assert not fig.data and "xy plane" in fig.layout.annotations[0].text and disabled
    fig, caption, disabled = viewer.strip_view(data, "xy", 0)
    assert len(fig.data[0].x) == 3 and "model v7" in caption and not disabled
    ops = viewer.strip_marker_patch(2).to_plotly_json()["operations"]
    assert ops[0]["location"] == ["layout", "shapes"] and ops[0]["params"]["value"][0]["x0"] == 1.5


def test_strip_click_and_worst_button_move_the_slice():
    data = {"values": [0.1, 0.4, 0.2], "model_id": 7, "worst": 1, "vid": 1}
    assert viewer.strip_jump(ids.UNCERTAINTY_STRIP, {"points": [{"x": 2, "y": 0.2}]}, data, "xy") == 2
    assert viewer.strip_jump(ids.UNCERTAINTY_STRIP, {"points": [{"x": 9}]}, data, "xy") == 2   # clipped
    assert viewer.strip_jump(ids.UNCERTAINTY_WORST, None, data, "xy") == 1
    assert viewer.strip_jump(ids.UNCERTAINTY_STRIP, {"points": []}, data, "xy") is None
    assert viewer.strip_jump(ids.UNCERTAINTY_WORST, None, data, "xz") is None     # y/x slices: not z
    assert viewer.strip_jump(ids.UNCERTAINTY_WORST, None, None, "xy") is None


def test_uncertainty_data_is_none_without_a_prediction(config, volume):
    assert viewer.uncertainty_data(config, info_of(config, volume)) is None
    assert viewer.uncertainty_data(config, None) is None


def test_new_results_make_their_overlay_visible_once():
    assert viewer.shown_opacity(123, 0) == viewer.SHOWN_OPACITY["prediction"]
    assert viewer.shown_opacity(123, 0.3) is no_update and viewer.shown_opacity(None, 0) is no_update
    assert viewer.shown_opacity(7, None, "objects") == viewer.SHOWN_OPACITY["objects"]
    rev, opacity = viewer.new_model_shown(41, 0.0)       # a training job finished: new revision, overlay on
    assert rev == "model-41" and opacity == viewer.SHOWN_OPACITY["prediction"]
    assert viewer.new_model_shown(42, 0.2) == ("model-42", no_update)
    assert viewer.new_model_shown(None, 0.0) == (no_update, no_update)


def test_plane_switches_keep_the_position_and_a_reload_restores_the_view(config, volume):
    info = info_of(config, volume)                      # shape (4, 48, 64)
    out = viewer.build_view("", info, "xy", ids.VOLUME_STORE, None, None, None, OPS)
    _, state, _ = viewer.slice_patch("", out["state"], 3, [10, 200], OPS)           # the user goes to z 3
    side = viewer.build_view("", info, "xz", ids.PLANE, state, 3, [10, 200], OPS)
    assert side["index"] == 24                          # y never visited: the middle row
    _, side_state, _ = viewer.slice_patch("", side["state"], 40, [10, 200], OPS)     # scrolls to y 40
    back = viewer.build_view("", info, "xy", ids.PLANE, side_state, 40, [10, 200], OPS)
    assert back["index"] == 3, "switching back to xy lost the slice the user was on"
    again = viewer.build_view("", info, "xz", ids.PLANE, back["state"], 3, [10, 200], OPS)
    assert again["index"] == 40
    # a reload: the stored state comes back, the widgets are at their defaults
    reload = viewer.build_view("", info, "xy", None, again["state"], 0, [0, 255], OPS)
    assert (reload["plane"], reload["index"], reload["contrast"]) == ("xz", 40, [10.0, 200.0])
    other = dict(again["state"], vid=-1)                # a state left by another volume is ignored
    fresh = viewer.build_view("", info, "xy", ids.VOLUME_STORE, other, 0, [0, 255], OPS)
    assert (fresh["plane"], fresh["index"]) == ("xy", 2) and fresh["contrast"] == [volume["lo"], volume["hi"]]
