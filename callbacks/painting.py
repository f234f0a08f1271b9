"""Painting callbacks: class/eraser choice, brush mode, strokes saved on the spot, undo / redo, counts.

A stroke arrives as plotly relayoutData; it is rasterised and stored at once (no save
button), the drawn shape is removed and the label overlay URL gets a new revision so
the browser fetches the updated overlay.
"""
from __future__ import annotations

from typing import Any

from dash import ALL, Input, Output, Patch, State, ctx, no_update

from app.config import Config
from app.errors import user_message
from app.services import labels
from callbacks.viewer import outline_for, overlay_url
from layouts import ids
from layouts import viewer as view

ERASER_COLOR = "#ffffff"


def brush_style(mode: str | None, plane: str | None, value: int | None, classes: list | None, width) -> dict:
    """dragmode + newshape colour/width for the chosen tool (view-only planes pan)."""
    if plane not in (None, "xy") or mode == "pan":
        dragmode = "pan"
    else:
        dragmode = view.DRAGMODES.get(mode or "stroke", "drawopenpath")
    color = ERASER_COLOR
    if value and classes and 0 < value <= len(classes):
        color = classes[value - 1]["color"]
    return {"dragmode": dragmode, "color": color, "width": float(width or 6)}


def paint_from_relayout(config: Config, relayout: dict | None, state: dict | None, value, width,
                        labels_rev: int | None, prefix: str = "") -> tuple[Any, Any, str, bool]:
    """-> (figure Patch, new labels revision, alert text, alert open); no_update when nothing was drawn."""
    strokes = labels.new_strokes(relayout)
    if not strokes:
        return no_update, no_update, "", False
    patch = Patch()
    plane = (state or {}).get("plane")
    index = (state or {}).get("index", 0)
    patch["layout"]["shapes"] = outline_for(state, plane, index)
    if not state or plane != "xy":
        return patch, no_update, "Painting works in the xy plane; switch the plane to xy to label.", True
    try:
        done = [labels.apply_stroke(config, state["vid"], index, p, value, width) for p in strokes]
    except Exception as e:  # noqa: BLE001 - shown to the user; the stroke is dropped, nothing else lost
        return patch, no_update, user_message(e), True
    rev = (labels_rev or 0) + 1
    if any(d["n_pixels"] for d in done):
        patch["layout"]["images"][1]["source"] = overlay_url(prefix, state["vid"], "labels", plane, index, rev)
    return patch, rev, "", False


def _stroke_words(done: dict, classes: list | None) -> str:
    names = [c["name"] for c in classes or []]
    return "an erase" if done["value"] == 0 else (
        f"a {names[done['value'] - 1]} stroke" if done["value"] <= len(names) else "a stroke")


def undo_last(config: Config, state: dict | None, labels_rev: int | None, classes: list | None = None,
              redo: bool = False) -> tuple[Any, str, bool, str]:
    """Undo (or redo) the newest stroke on the slice in view -> (labels rev, message, alert open, alert colour)."""
    verb = "Redo" if redo else "Undo"
    if not state or state.get("vid") is None:
        return no_update, "Select a volume first.", True, "danger"
    if state.get("plane") != "xy":
        return no_update, f"{verb} works on the xy slice in view: switch the plane to xy.", True, "warning"
    z = int(state.get("index", 0))
    try:
        done = (labels.redo if redo else labels.undo)(config, state["vid"], z)
    except Exception as e:  # noqa: BLE001
        return no_update, user_message(e), True, "danger"
    if not done:
        return no_update, f"Nothing to {verb.lower()} on slice {z} ({verb} works on the slice in view).", True, "warning"
    did = "Painted again" if redo else "Undid"
    return (labels_rev or 0) + 1, f"{did} {_stroke_words(done, classes)} on slice {z} ({done['pixels']:,} px).", True, "info"


def chosen_value(trigger: Any, clicks: list | None, eraser_clicks) -> Any:
    """Label value picked by a class button (its index) or 0 for the eraser; no_update on re-render."""
    if trigger == ids.ERASER:
        return 0 if eraser_clicks else no_update
    if isinstance(trigger, dict) and trigger.get("type") == ids.CLASS_BUTTON_TYPE:
        return int(trigger["index"]) if any(clicks or []) else no_update
    return no_update


def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)
    prefix = (app.config.requests_pathname_prefix or "/").rstrip("/")

    @app.callback(Output(ids.CLASS_BUTTONS, "children"), Output(ids.ERASER, "outline"),
                  Input(ids.CLASSES_STORE, "data"), Input(ids.PAINT_VALUE, "data"))
    def on_class_buttons(classes, value):
        return view.class_buttons(classes or [], value), value != 0

    @app.callback(Output(ids.PAINT_VALUE, "data"),
                  Input({"type": ids.CLASS_BUTTON_TYPE, "index": ALL}, "n_clicks"), Input(ids.ERASER, "n_clicks"),
                  prevent_initial_call=True)
    def on_pick(clicks, eraser):
        return chosen_value(ctx.triggered_id, clicks, eraser)

    @app.callback(Output(ids.GRAPH, "figure", allow_duplicate=True),
                  Input(ids.PAINT_MODE, "value"), Input(ids.PAINT_VALUE, "data"), Input(ids.BRUSH, "value"),
                  Input(ids.CLASSES_STORE, "data"), Input(ids.VIEW_STATE, "data"), prevent_initial_call=True)
    def on_tool(mode, value, width, classes, state):
        style = brush_style(mode, (state or {}).get("plane"), value, classes, width)
        patch = Patch()
        patch["layout"]["dragmode"] = style["dragmode"]
        patch["layout"]["newshape"]["line"]["color"] = style["color"]
        patch["layout"]["newshape"]["line"]["width"] = style["width"]
        patch["layout"]["newshape"]["fillcolor"] = style["color"]
        return patch

    @app.callback(Output(ids.GRAPH, "figure", allow_duplicate=True), Output(ids.LABELS_REV, "data"),
                  Output(ids.PAINT_ALERT, "children"), Output(ids.PAINT_ALERT, "is_open"),
                  Output(ids.PAINT_ALERT, "color"),
                  Input(ids.GRAPH, "relayoutData"),
                  State(ids.VIEW_STATE, "data"), State(ids.PAINT_VALUE, "data"), State(ids.BRUSH, "value"),
                  State(ids.LABELS_REV, "data"), prevent_initial_call=True)
    def on_stroke(relayout, state, value, width, rev):
        return (*paint_from_relayout(config, relayout, state, value, width, rev, prefix), "danger")

    @app.callback(Output(ids.LABELS_REV, "data", allow_duplicate=True),
                  Output(ids.PAINT_ALERT, "children", allow_duplicate=True),
                  Output(ids.PAINT_ALERT, "is_open", allow_duplicate=True),
                  Output(ids.PAINT_ALERT, "color", allow_duplicate=True),
                  Input(ids.UNDO, "n_clicks"), Input(ids.REDO, "n_clicks"), State(ids.VIEW_STATE, "data"),
                  State(ids.LABELS_REV, "data"), State(ids.CLASSES_STORE, "data"), prevent_initial_call=True)
    def on_undo_or_redo(_undo, _redo, state, rev, classes):
        return undo_last(config, state, rev, classes, redo=ctx.triggered_id == ids.REDO)

    @app.callback(Output(ids.COUNTS, "children"), Input(ids.LABELS_REV, "data"), Input(ids.VOLUME_STORE, "data"),
                  Input(ids.CLASSES_STORE, "data"))
    def on_counts(_rev, info, _classes):
        if not info:
            return view.counts_table([])
        return view.counts_table(labels.counts(config, info["id"]))
