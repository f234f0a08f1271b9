"""Viewer callbacks: figure per volume/plane, cheap Patch updates per slice/contrast/overlay.

The figure carries only URLs; the browser fetches PNGs from app.routes (cached, ETag).
``uirevision`` changes only with volume, plane or a navigation request, so zoom and pan
survive slice scrubbing.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from dash import Input, Output, Patch, State, ctx, no_update

from app.config import Config
from app.services import segmentation
from layouts import ids
from layouts import viewer as view

try:
    from layouts import ids_panels
except ImportError:  # pragma: no cover - panels not present
    ids_panels = None  # type: ignore[assignment]

AXIS = {"xy": 0, "xz": 1, "yz": 2}
AXIS_NAME = {"xy": "z", "xz": "y", "yz": "x"}
NAV_MARGIN = 0.25


# --- pure helpers (tests call these) -----------------------------------------------------------------
def plane_dims(shape, plane: str) -> tuple[int, int]:
    """(height, width) of a plane of a (Z, Y, X) volume."""
    z, y, x = shape
    return {"xy": (y, x), "xz": (z, x), "yz": (z, y)}[plane]


def plane_aspect(voxel_size, plane: str) -> float:
    """Row pixel size / column pixel size, so xz/yz show true proportions."""
    if not voxel_size or plane == "xy":
        return 1.0
    vz, vy, vx = voxel_size
    return float(vz) / float(vx if plane == "xz" else vy)


def fmt_num(v: float) -> str:
    """Window bound as text, identical to the keyboard/prefetch script's (same URL = browser cache hit)."""
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:.4f}".rstrip("0").rstrip(".")


def tile_url(prefix: str, vid: int, plane: str, index: int, lo: float, hi: float) -> str:
    return f"{prefix}/tiles/{vid}/{plane}/{int(index)}.png?lo={fmt_num(lo)}&hi={fmt_num(hi)}"


LIVE_KINDS = ("prediction", "uncertainty")    # overlays live mode replaces on the slice it predicted


def overlay_url(prefix: str, vid: int, kind: str, plane: str, index: int, rev: Any, live: Any = None) -> str:
    """An overlay PNG's URL; ``live`` (live mode's view revision) asks for the live draft's view."""
    url = f"{prefix}/overlay/{vid}/{kind}/{plane}/{int(index)}.png?rev={rev}"
    return url + f"&live={live}" if live and kind in LIVE_KINDS else url


def overlay_rev(labels_rev: Any, seg_rev: Any, kind: str) -> Any:
    return labels_rev or 0 if kind == "labels" else seg_rev or 0


def overlay_specs(prefix: str, vid: int, plane: str, index: int, opacities: dict, labels_rev, seg_rev,
                  live_rev=None) -> dict:
    """kind -> (url or None when hidden, opacity)."""
    out = {}
    for kind in view.OVERLAYS:
        op = float(opacities.get(kind) or 0.0)
        rev = overlay_rev(labels_rev, seg_rev, kind)
        url = overlay_url(prefix, vid, kind, plane, index, rev, live_rev) if op > 0 else None
        out[kind] = (url, op)
    return out


def outline_for(state: dict | None, plane: str, index: int) -> list[dict]:
    box = (state or {}).get("outline")
    if box and plane == "xy" and int(box.get("z", -1)) == int(index):
        return [view.outline_shape(box)]
    return []


def nav_box(nav: dict, shape) -> dict:
    """A navigation request clipped to the volume: z, y0, y1, x0, x1 (ints, exclusive ends)."""
    z, h, w = shape
    y0, y1 = sorted((int(nav["y0"]), int(nav["y1"])))
    x0, x1 = sorted((int(nav["x0"]), int(nav["x1"])))
    return {"z": int(np.clip(int(nav["z"]), 0, z - 1)), "y0": max(0, y0), "y1": min(h, y1),
            "x0": max(0, x0), "x1": min(w, x1)}


def position(state: dict, shape) -> dict[str, int]:
    """The remembered (z, y, x) position: each axis's last slice, the middle where never visited."""
    pos = {name: int(shape[axis]) // 2 for name, axis in (("z", 0), ("y", 1), ("x", 2))}
    pos.update({k: int(v) for k, v in (state.get("pos") or {}).items() if k in pos})
    if state.get("plane") in AXIS and state.get("index") is not None:
        pos[AXIS_NAME[state["plane"]]] = int(state["index"])
    return pos


def build_view(prefix: str, info: dict | None, plane: str, trigger: Any, state: dict | None, index: int | None,
               contrast, opacities: dict, labels_rev=0, seg_rev=0, nav: dict | None = None, live_rev=None) -> dict:
    """Everything the viewer shows for a volume/plane/navigation change (a plain dict of outputs)."""
    if not info:
        return {"figure": view.make_figure(1, 1), "max": 0, "index": 0, "contrast": [0, 255], "cmin": 0,
                "cmax": 255, "step": 1, "plane": plane or "xy", "state": None, "note": "Select a volume."}
    state = dict(state or {})
    shape, vid = info["shape"], info["id"]
    same_volume = state.get("vid") == vid
    plane = plane or "xy"
    nav_n = int(state.get("nav_n", 0))
    outline = state.get("outline") if same_volume else None
    ranges = None
    pos = position(state if same_volume else {}, shape)
    restore = same_volume and trigger in (None, ids.VOLUME_STORE) and state.get("index") is not None
    if trigger == "nav" and nav:
        box = nav_box(nav, shape)
        plane, index, nav_n = "xy", box["z"], nav_n + 1
        outline = box if nav.get("outline", True) else None
        my, mx = (box["y1"] - box["y0"]) * NAV_MARGIN, (box["x1"] - box["x0"]) * NAV_MARGIN
        ranges = ([box["x0"] - mx - 0.5, box["x1"] + mx - 0.5], [box["y1"] + my - 0.5, box["y0"] - my - 0.5])
    elif restore:   # a reload or a re-selected volume: where the user was
        plane, index = state.get("plane", plane), state["index"]
        contrast = state.get("contrast", contrast)
    elif not same_volume or trigger == ids.PLANE or state.get("plane") != plane or index is None:
        index = pos[AXIS_NAME[plane]]   # a plane switch keeps the position along the new axis
    index = int(np.clip(index, 0, shape[AXIS[plane]] - 1))
    pos[AXIS_NAME[plane]] = index
    if not same_volume or contrast is None:
        contrast = [info["lo"], info["hi"]]
    lo, hi = float(contrast[0]), float(contrast[1])
    h, w = plane_dims(shape, plane)
    uirev = f"{vid}-{plane}-{nav_n}"
    state = {"vid": vid, "plane": plane, "index": index, "uirev": uirev, "nav_n": nav_n, "outline": outline,
             "shape2d": [h, w], "pos": pos, "contrast": [lo, hi]}
    fig = view.make_figure(w, h, tile_url(prefix, vid, plane, index, lo, hi),
                           overlay_specs(prefix, vid, plane, index, opacities, labels_rev, seg_rev, live_rev),
                           uirevision=uirev, aspect=plane_aspect(info.get("voxel_size"), plane),
                           dragmode="drawopenpath" if plane == "xy" else "pan")
    fig["layout"]["shapes"] = outline_for(state, plane, index)
    if ranges:
        fig["layout"]["xaxis"]["range"], fig["layout"]["yaxis"]["range"] = ranges
    cmin, cmax = info.get("vmin", 0.0), info.get("vmax", 255.0)
    step = 1 if np.dtype(info["dtype"]).kind in "ui" else (cmax - cmin) / 255 or 1
    note = "" if plane == "xy" else "Painting works in the xy plane; xz/yz are view only."
    return {"figure": fig, "max": shape[AXIS[plane]] - 1, "index": index, "contrast": [lo, hi], "cmin": cmin,
            "cmax": cmax, "step": step, "plane": plane, "state": state, "note": note}


def slice_patch(prefix: str, state: dict, index: int, contrast, opacities: dict, labels_rev=0, seg_rev=0,
                live_rev=None):
    """(Patch of image sources/opacities, new state, label text) for a slice/contrast/overlay change."""
    vid, plane = state["vid"], state["plane"]
    lo, hi = float(contrast[0]), float(contrast[1])
    patch = Patch()
    patch["layout"]["images"][0]["source"] = tile_url(prefix, vid, plane, index, lo, hi)
    for i, (kind, (url, op)) in enumerate(overlay_specs(prefix, vid, plane, index, opacities,
                                                        labels_rev, seg_rev, live_rev).items(), start=1):
        patch["layout"]["images"][i]["source"] = url or ""
        patch["layout"]["images"][i]["opacity"] = op
        patch["layout"]["images"][i]["visible"] = bool(url)
    patch["layout"]["shapes"] = outline_for(state, plane, index)
    new_state = dict(state, index=int(index), contrast=[float(contrast[0]), float(contrast[1])])
    return patch, new_state, f"{AXIS_NAME[plane]} {int(index)}"


def uncertainty_data(config: Config, info: dict | None) -> dict | None:
    """The strip's data for the selected volume (the service's answer and the volume id), or None."""
    if not info:
        return None
    found = segmentation.slice_uncertainty(config, info["id"])
    return dict(found, vid=info["id"]) if found else None


def strip_view(data: dict | None, plane: str | None, index: int | None) -> tuple[Any, str, bool]:
    """(figure, caption, worst button disabled) of the uncertainty strip; z slices only."""
    if (plane or "xy") != "xy":
        return view.uncertainty_strip(None, hint=view.STRIP_PLANE_HINT), "", True
    if not data:
        return view.uncertainty_strip(None), "", True
    return view.uncertainty_strip(data["values"], index), view.strip_caption(data["model_id"]), False


def strip_marker_patch(index: int) -> Patch:
    """Move the current-slice outline only (slider scrubbing must not resend every bar)."""
    patch = Patch()
    patch["layout"]["shapes"] = [view.strip_marker(index)]
    return patch


def strip_jump(trigger: Any, click: dict | None, data: dict | None, plane: str | None) -> int | None:
    """Slice to show after a click on a bar (its index) or on "worst slice" (the argmax); None: stay."""
    if not data or (plane or "xy") != "xy":
        return None
    if trigger == ids.UNCERTAINTY_WORST:
        return int(data["worst"])
    points = (click or {}).get("points") or []
    if not points or points[0].get("x") is None:
        return None
    return int(np.clip(round(float(points[0]["x"])), 0, len(data["values"]) - 1))


SHOWN_OPACITY = {"prediction": 0.5, "objects": 0.8}   # an overlay's opacity when a new result first shows


def shown_opacity(rev: Any, opacity: float | None, kind: str = "prediction") -> Any:
    """Make an overlay visible when a new result arrives (live draft, trained model, objects);
    an opacity the user chose is kept."""
    return SHOWN_OPACITY[kind] if rev and not (opacity or 0) else no_update


def new_model_shown(done: Any, opacity: float | None) -> tuple:
    """After a training job: a new overlay revision (the active model's prediction) and a visible overlay."""
    if not done:
        return no_update, no_update
    return f"model-{done}", shown_opacity(done, opacity)


# --- wiring -------------------------------------------------------------------------------------------
def _seg_input() -> list:
    return [Input(ids_panels.SEG_DONE, "data")] if ids_panels is not None and hasattr(ids_panels, "SEG_DONE") else []


def _nav_input() -> list:
    return [Input(ids_panels.NAV_REQUEST, "data")] if ids_panels is not None and hasattr(ids_panels, "NAV_REQUEST") else []


def register(app) -> None:
    config = app.server.config["ACTIVESEG"]   # the app's one Config (jobs see it in their closure)
    prefix = (app.config.requests_pathname_prefix or "/").rstrip("/")
    seg_in, nav_in = _seg_input(), _nav_input()
    opacity_ids = [view.OVERLAY_IDS[k] for k in view.OVERLAYS]

    @app.callback(
        Output(ids.GRAPH, "figure"), Output(ids.SLICE, "max"), Output(ids.SLICE, "value"),
        Output(ids.CONTRAST, "min"), Output(ids.CONTRAST, "max"), Output(ids.CONTRAST, "value"),
        Output(ids.CONTRAST, "step"), Output(ids.PLANE, "value"), Output(ids.VIEW_STATE, "data"),
        Output(ids.VIEWER_NOTE, "children"),
        Input(ids.VOLUME_STORE, "data"), Input(ids.PLANE, "value"), *nav_in,
        State(ids.VIEW_STATE, "data"), State(ids.SLICE, "value"), State(ids.CONTRAST, "value"),
        *[State(i, "value") for i in opacity_ids], State(ids.LABELS_REV, "data"),
        *[State(ids_panels.SEG_DONE, "data")] if seg_in else [], State(ids.LIVE_REV, "data"),
    )
    def on_view(info, plane, *rest):
        live_rev, rest = rest[-1], rest[:-1]
        nav = rest[0] if nav_in else None
        rest = rest[1:] if nav_in else rest
        state, index, contrast, *ops = rest[:3 + len(opacity_ids)]
        labels_rev = rest[3 + len(opacity_ids)]
        seg_rev = rest[4 + len(opacity_ids)] if seg_in else 0
        trigger = "nav" if nav_in and ctx.triggered_id == ids_panels.NAV_REQUEST else ctx.triggered_id
        if trigger == "nav" and (not nav or not info or nav.get("vid", info["id"]) != info["id"]):
            return (no_update,) * 10
        out = build_view(prefix, info, plane, trigger, state, index, contrast, dict(zip(view.OVERLAYS, ops)),
                         labels_rev, seg_rev, nav, live_rev)
        return (out["figure"], out["max"], out["index"], out["cmin"], out["cmax"], out["contrast"], out["step"],
                out["plane"], out["state"], out["note"])

    @app.callback(
        Output(ids.GRAPH, "figure", allow_duplicate=True), Output(ids.VIEW_STATE, "data", allow_duplicate=True),
        Output(ids.SLICE_LABEL, "children"),
        Input(ids.SLICE, "value"), Input(ids.CONTRAST, "value"), *[Input(i, "value") for i in opacity_ids],
        Input(ids.LABELS_REV, "data"), *seg_in, Input(ids.LIVE_REV, "data"),
        State(ids.VIEW_STATE, "data"), State(ids.VOLUME_STORE, "data"),
        prevent_initial_call=True,
    )
    def on_slice(index, contrast, *rest):
        live_rev = rest[-3]
        ops = rest[:len(opacity_ids)]
        labels_rev = rest[len(opacity_ids)]
        seg_rev = rest[len(opacity_ids) + 1] if seg_in else 0
        state, info = rest[-2], rest[-1]
        if not state or not info or state.get("vid") != info["id"] or index is None or contrast is None:
            return no_update, no_update, no_update
        index = int(np.clip(index, 0, info["shape"][AXIS[state["plane"]]] - 1))
        return slice_patch(prefix, state, index, contrast, dict(zip(view.OVERLAYS, ops)), labels_rev, seg_rev,
                           live_rev)

    if seg_in:
        @app.callback(Output(ids_panels.SEG_DONE, "data", allow_duplicate=True),
                      Output(ids.OVERLAY_PREDICTION, "value", allow_duplicate=True),
                      Input(ids_panels.TR_DONE, "data"), State(ids.OVERLAY_PREDICTION, "value"),
                      prevent_initial_call=True)
        def on_new_model(done, opacity):
            return new_model_shown(done, opacity)

        @app.callback(Output(ids.OVERLAY_OBJECTS, "value", allow_duplicate=True), Input(ids_panels.OBJ_SEG, "data"),
                      State(ids.OVERLAY_OBJECTS, "value"), prevent_initial_call=True)
        def on_new_objects(seg_id, opacity):
            return shown_opacity(seg_id, opacity, "objects")

    @app.callback(Output(ids.UNCERTAINTY_STORE, "data"), Input(ids.VOLUME_STORE, "data"), *seg_in)
    def on_uncertainty_data(info, *_seg):
        return uncertainty_data(config, info)

    @app.callback(
        Output(ids.UNCERTAINTY_STRIP, "figure"), Output(ids.UNCERTAINTY_CAPTION, "children"),
        Output(ids.UNCERTAINTY_WORST, "disabled"),
        Input(ids.UNCERTAINTY_STORE, "data"), Input(ids.PLANE, "value"), Input(ids.SLICE, "value"),
    )
    def on_strip(data, plane, index):
        if data and plane == "xy" and index is not None and set(ctx.triggered_prop_ids) == {f"{ids.SLICE}.value"}:
            return strip_marker_patch(index), no_update, no_update
        return strip_view(data, plane, index)

    @app.callback(Output(ids.SLICE, "value", allow_duplicate=True), Input(ids.UNCERTAINTY_STRIP, "clickData"),
                  Input(ids.UNCERTAINTY_WORST, "n_clicks"), State(ids.UNCERTAINTY_STORE, "data"),
                  State(ids.PLANE, "value"), prevent_initial_call=True)
    def on_strip_jump(click, _n, data, plane):
        z = strip_jump(ctx.triggered_id, click, data, plane)
        return no_update if z is None else z

    @app.callback(Output(ids.CONTRAST, "value", allow_duplicate=True), Input(ids.CONTRAST_RESET, "n_clicks"),
                  State(ids.VOLUME_STORE, "data"), prevent_initial_call=True)
    def on_contrast_reset(_n, info):
        return [info["lo"], info["hi"]] if info else no_update

    # keyboard / buttons step the slider in the browser (no server round trip)
    app.clientside_callback(
        """function(p, n, value, max) {
            const t = (dash_clientside.callback_context.triggered[0] || {}).prop_id || "";
            const d = t.startsWith("%s.") ? -1 : (t.startsWith("%s.") ? 1 : 0);
            if (!d) { return dash_clientside.no_update; }
            return Math.max(0, Math.min(max || 0, (value || 0) + d));
        }""" % (ids.SLICE_PREV, ids.SLICE_NEXT),
        Output(ids.SLICE, "value", allow_duplicate=True),
        Input(ids.SLICE_PREV, "n_clicks"), Input(ids.SLICE_NEXT, "n_clicks"),
        State(ids.SLICE, "value"), State(ids.SLICE, "max"), prevent_initial_call=True,
    )
    app.clientside_callback(
        """function(state, contrast, info) {
            if (!state || !contrast || !info) { return dash_clientside.no_update; }
            const ax = {xy: 0, xz: 1, yz: 2}[state.plane], n = info.shape[ax], urls = [];
            const f = (v) => Number.isInteger(v) ? String(v) : v.toFixed(4).replace(/0+$/, "").replace(/[.]$/, "");
            for (const d of [1, -1, 2, -2]) {
                const i = state.index + d;
                if (i < 0 || i >= n) continue;
                const u = "%s/tiles/" + state.vid + "/" + state.plane + "/" + i + ".png?lo=" + f(contrast[0]) + "&hi=" + f(contrast[1]);
                const img = new Image(); img.src = u; urls.push(u);
            }
            return urls;
        }""" % prefix,
        Output(ids.PREFETCH, "data"), Input(ids.VIEW_STATE, "data"), State(ids.CONTRAST, "value"),
        State(ids.VOLUME_STORE, "data"), prevent_initial_call=True,
    )
