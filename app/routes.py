"""Flask routes: slice tiles, overlays, suggestion thumbnails (PNG, cache headers) and exports.

Tiles of raw data never change for a volume id (ids are never reused), so they carry a
strong ETag and a long max-age; overlays change as labels/predictions change, so they are
revalidated (``no-cache`` + content ETag) and the viewer adds a revision to their URL.
Finished exports are streamed from the workspace (files too large for ``dcc.Download``).
With ``?live=<rev>`` the prediction and uncertainty overlays of the xy slice live mode has
just predicted show the live draft's view (``app.services.live``). A bad query or path is
answered 400 / 404 with a one-line plain-text reason, never a 500.
"""
from __future__ import annotations

import hashlib
import math
from typing import NoReturn

import numpy as np
from flask import Flask, Response, abort, jsonify, request, send_file

from app import access, imaging
from app.config import Config
from app.errors import NotFound, UserError
from app.services import active, exports, live, predictions, projects, segmentation

OVERLAY_KINDS = ("labels", "prediction", "uncertainty", "gt", "objects")
TILE_MAX_AGE = 3600
MAX_LEVEL = 6                 # 1/64 of a side: an overview needs no coarser level


def _refuse(status: int, message: str) -> NoReturn:
    """End the request with a short plain-text reason (a bad query is the client's to fix, never a 500)."""
    abort(Response(message + "\n", status=status, mimetype="text/plain"))


def _float_arg(name: str) -> float | None:
    v = request.args.get(name)
    if v in (None, ""):
        return None
    try:
        value = float(v)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        _refuse(400, f"{name} must be a finite number, got {v!r}")
    return value


def _level_arg() -> int:
    """``?level=``: overview tiles show every 2**level-th pixel, level 0..MAX_LEVEL."""
    v = request.args.get("level") or "0"
    level = int(v) if v.isdecimal() else -1
    if not 0 <= level <= MAX_LEVEL:
        _refuse(400, f"level must be an integer 0..{MAX_LEVEL}, got {v!r}")
    return level


def _model_arg() -> int | None:
    """``?mid=``: the model whose prediction to overlay (default: the newest segmentation's or active one)."""
    v = request.args.get("mid")
    if v in (None, ""):
        return None
    if not v.isdecimal():
        _refuse(400, f"mid must be a model id (a whole number), got {v!r}")
    return int(v)


def _png_response(data: bytes, etag: str, cache_control: str) -> Response:
    resp = Response(data, mimetype="image/png")
    resp.headers["ETag"] = f'"{etag}"'
    resp.headers["Cache-Control"] = cache_control
    return resp


def _content_png(data: bytes, cache_control: str) -> Response:
    """PNG whose ETag is a hash of its bytes (304 when the browser already has them)."""
    etag = hashlib.sha1(data).hexdigest()[:24]
    return _not_modified(etag, cache_control) or _png_response(data, etag, cache_control)


def _not_modified(etag: str, cache_control: str) -> Response | None:
    inm = request.headers.get("If-None-Match", "")
    if inm and (inm.strip() == "*" or f'"{etag}"' in [t.strip().removeprefix("W/") for t in inm.split(",")]):
        resp = Response(status=304)
        resp.headers["ETag"] = f'"{etag}"'
        resp.headers["Cache-Control"] = cache_control
        return resp
    return None


def _check_plane(plane: str, index: int, shape) -> None:
    if plane not in imaging.PLANES:
        _refuse(404, f"plane must be one of {imaging.PLANES}")
    axis = {"xy": 0, "xz": 1, "yz": 2}[plane]
    if not 0 <= index < shape[axis]:
        _refuse(404, f"index {index} outside 0..{shape[axis] - 1}")


def label_plane(store, plane: str, index: int, shape) -> np.ndarray:
    """One plane of a LabelStore (numpy-style indexing reads only the needed tiles)."""
    if plane == "xy":
        return store.read_slice(index)
    return store[:, index, :] if plane == "xz" else store[:, :, index]


def _render_overlay(config: Config, vid: int, kind: str, plane: str, index: int, shape) -> np.ndarray | None:
    if kind == "labels":
        store = projects.label_store(config, vid)
        return imaging.labels_rgba(label_plane(store, plane, index, shape), store.classes)
    if kind == "gt":
        gt = projects.open_ground_truth(config, vid)
        return None if gt is None else imaging.mask_rgba(predictions.array_plane(gt, plane, index))
    if kind == "objects":
        return _objects_overlay(config, vid, plane, index)
    if request.args.get("live") and plane == "xy":
        rgba = _live_overlay(config, vid, kind, index, shape)
        if rgba is not None:
            return rgba
    planes = predictions.overlay_plane(config, vid, plane, index, _model_arg())
    if planes is None:
        return None
    if kind == "prediction":
        return imaging.prediction_rgba(planes["prob"], projects.get_classes(config, vid))
    u = planes["entropy"] if "entropy" in planes else imaging.entropy_of(planes["prob"])
    return imaging.uncertainty_rgba(np.asarray(u, np.float32))


def _objects_overlay(config: Config, vid: int, plane: str, index: int) -> np.ndarray | None:
    """Outlines of the newest segmentation's objects, one colour per object (None before any)."""
    seg_id = segmentation.latest_segmentation_id(config, vid)
    if seg_id is None:
        return None
    try:
        instances = segmentation.open_instances(config, seg_id)
    except UserError:   # segmented but not post-processed into objects yet
        return None
    return imaging.outlines_rgba(predictions.array_plane(instances, plane, index))


def _live_overlay(config: Config, vid: int, kind: str, index: int, shape) -> np.ndarray | None:
    """The live draft's prediction / uncertainty of the viewed area of slice ``index`` (transparent
    around it), or None when live mode has no view of this slice (the caller falls back)."""
    view = live.view_prediction(config, vid, index)
    if view is None:
        return None
    y0, y1, x0, x1 = view["box"]
    rgba = np.zeros((shape[1], shape[2], 4), np.uint8)
    rgba[y0:y1, x0:x1] = (imaging.prediction_rgba(view["prob"], projects.get_classes(config, vid))
                          if kind == "prediction" else imaging.uncertainty_rgba(view["entropy"]))
    return rgba


def register_routes(server: Flask, config: Config) -> imaging.PNGCache:
    """Add the image routes to ``server``; returns the tile cache (for stats and tests)."""
    cache = imaging.PNGCache(config.tile_cache_mb * 2**20)

    infos: dict[int, dict] = {}   # shape/window/created of a volume never change: skip the DB per tile

    def tile_info(vid: int) -> dict:
        info = infos.get(vid)
        if info is None or access.current_account() is not None:   # shared mode: the DB decides who sees it
            try:
                info = infos[vid] = projects.volume_info(config, vid)
            except NotFound as e:
                _refuse(404, str(e))
        return info

    @server.route("/tiles/<int:vid>/<plane>/<int:index>.png")
    def tile(vid: int, plane: str, index: int):
        info = tile_info(vid)
        _check_plane(plane, index, info["shape"])
        lo = _float_arg("lo")
        hi = _float_arg("hi")
        lo = info["lo"] if lo is None else lo
        hi = info["hi"] if hi is None else hi
        level = _level_arg()
        cc = f"private, max-age={TILE_MAX_AGE}"
        etag = f"t{vid}-{info['created']}-{plane}-{index}-{lo!r}-{hi!r}-{level}"
        etag = hashlib.sha1(etag.encode()).hexdigest()[:24]
        nm = _not_modified(etag, cc)
        if nm is not None:
            return nm
        data = cache.get(etag)
        if data is None:
            try:
                vol = projects.open_volume(config, vid)
            except UserError as e:
                _refuse(410, str(e))
            arr = imaging.downsample(vol.plane(plane, index), level)
            data = imaging.encode_png(imaging.window(arr, lo, hi), config.png_level)
            cache.put(etag, data)
        return _png_response(data, etag, cc)

    @server.route("/overlay/<int:vid>/<kind>/<plane>/<int:index>.png")
    def overlay(vid: int, kind: str, plane: str, index: int):
        if kind not in OVERLAY_KINDS:
            _refuse(404, f"overlay kind must be one of {OVERLAY_KINDS}")
        try:
            info = projects.volume_info(config, vid)
        except NotFound as e:
            _refuse(404, str(e))
        _check_plane(plane, index, info["shape"])
        level = _level_arg()
        rgba = _render_overlay(config, vid, kind, plane, index, info["shape"])
        data = imaging.TRANSPARENT_PNG if rgba is None else imaging.encode_png(
            imaging.downsample(rgba.transpose(2, 0, 1), level).transpose(1, 2, 0))
        return _content_png(data, "no-cache")

    @server.route("/objects/<int:vid>/<plane>/<int:index>/at")
    def object_under_cursor(vid: int, plane: str, index: int):
        """JSON ``{id, text}`` of the object at pixel (?r=, ?c=) of a plane (the viewer's hover line)."""
        info = tile_info(vid)
        _check_plane(plane, index, info["shape"])
        r, c = _float_arg("r"), _float_arg("c")
        if r is None or c is None:
            _refuse(400, "give the pixel as ?r=<row>&c=<column>")
        voxel = segmentation.plane_voxel(plane, index, int(round(r)), int(round(c)))
        if not all(0 <= v < n for v, n in zip(voxel, info["shape"])):
            return jsonify({"id": 0, "text": ""})
        return jsonify(segmentation.object_at(config, vid, voxel))

    @server.route("/thumbs/<int:suggestion_id>.png")
    def thumb(suggestion_id: int):
        try:
            data = active.thumbnail_png(suggestion_id, config)   # rebuilt when the file is gone
        except UserError as e:
            _refuse(404, str(e))
        return _content_png(data, "private, max-age=60")

    @server.route("/exports/<name>")
    def export_file(name: str):
        try:
            path = exports.resolve_export(config, name)
        except UserError as e:
            _refuse(404, str(e))
        return send_file(path, as_attachment=True, download_name=path.name, conditional=True, max_age=0)

    return cache
