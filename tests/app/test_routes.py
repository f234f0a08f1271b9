"""Image routes through the Flask test client: right pixels, contrast, ETag/304, overlays, errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app import imaging
from app.services import labels


def png(resp) -> np.ndarray:
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.data)))


def window(arr, lo, hi):
    return np.rint(np.clip((arr.astype(np.float64) - lo) * 255.0 / (hi - lo), 0, 255)).astype(np.uint8)


def test_tile_is_the_slice_with_the_contrast_applied(client, volume, raw):
    vid = volume["id"]
    np.testing.assert_array_equal(png(client.get(f"/tiles/{vid}/xy/2.png?lo=0&hi=255")), raw[2])
    got = png(client.get(f"/tiles/{vid}/xy/1.png?lo=60&hi=120"))
    np.testing.assert_array_equal(got, window(raw[1], 60, 120))
    assert got.min() == 0 and got.max() == 255   # clipped at both ends


def test_orthogonal_planes_and_levels(client, volume, raw):
    vid = volume["id"]
    np.testing.assert_array_equal(png(client.get(f"/tiles/{vid}/xz/7.png?lo=0&hi=255")), raw[:, 7, :])
    np.testing.assert_array_equal(png(client.get(f"/tiles/{vid}/yz/63.png?lo=0&hi=255")), raw[:, :, 63])
    np.testing.assert_array_equal(png(client.get(f"/tiles/{vid}/xy/0.png?lo=0&hi=255&level=1")), raw[0, ::2, ::2])


def test_default_window_is_the_volume_percentiles(client, volume, raw):
    got = png(client.get(f"/tiles/{volume['id']}/xy/3.png"))
    np.testing.assert_array_equal(got, window(raw[3], volume["lo"], volume["hi"]))
    assert volume["lo"] > 0 and volume["hi"] < 255


def test_etag_gives_304_and_changes_with_the_window(client, volume):
    url = f"/tiles/{volume['id']}/xy/1.png?lo=0&hi=200"
    first = client.get(url)
    etag = first.headers["ETag"]
    assert "max-age" in first.headers["Cache-Control"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    other = client.get(f"/tiles/{volume['id']}/xy/1.png?lo=0&hi=201")
    assert other.headers["ETag"] != etag


def test_rendered_tiles_are_cached(dash_app, client, volume):
    cache = dash_app._activeseg_tiles
    client.get(f"/tiles/{volume['id']}/xy/0.png?lo=0&hi=255")
    client.get(f"/tiles/{volume['id']}/xy/0.png?lo=0&hi=255")
    assert cache.hits == 1 and len(cache) == 1


@pytest.mark.parametrize("url", ["/tiles/999/xy/0.png", "/tiles/{vid}/xy/4.png", "/tiles/{vid}/ab/0.png",
                                 "/tiles/{vid}/xz/48.png", "/overlay/{vid}/nope/xy/0.png"])
def test_bad_requests_are_404(client, volume, url):
    assert client.get(url.format(vid=volume["id"])).status_code == 404


def test_bad_window_is_400(client, volume):
    assert client.get(f"/tiles/{volume['id']}/xy/0.png?lo=abc").status_code == 400


@pytest.mark.parametrize("url", ["/tiles/{vid}/xy/0.png?level=abc", "/tiles/{vid}/xy/0.png?level=-1",
                                 "/tiles/{vid}/xy/0.png?level=99999999999999999999", "/tiles/{vid}/xz/0.png?level=1.5",
                                 "/tiles/{vid}/xy/0.png?lo=nan", "/tiles/{vid}/xy/0.png?lo=0&hi=inf",
                                 "/overlay/{vid}/labels/xy/0.png?level=abc", "/overlay/{vid}/labels/yz/0.png?level=-1",
                                 "/overlay/{vid}/gt/xy/0.png?level=100",
                                 "/overlay/{vid}/prediction/xy/0.png?mid=abc"])
def test_bad_queries_are_400_with_a_short_text(client, volume, url):
    name = url.rsplit("&", 1)[-1].split("?")[-1].split("=")[0]
    resp = client.get(url.format(vid=volume["id"]))
    assert resp.status_code == 400 and resp.mimetype == "text/plain"
    assert resp.text.startswith(f"{name} must be") and len(resp.text.splitlines()) == 1


def test_levels_0_to_6_are_served(client, volume):
    for level in (0, 6):
        assert client.get(f"/tiles/{volume['id']}/xy/0.png?level={level}").status_code == 200
        assert client.get(f"/overlay/{volume['id']}/labels/xy/0.png?level={level}").status_code == 200


def test_label_overlay_shows_a_stroke_in_the_class_colour(config, client, volume):
    vid = volume["id"]
    empty = png(client.get(f"/overlay/{vid}/labels/xy/2.png"))
    assert empty.shape == (48, 64, 4) and empty[..., 3].max() == 0
    labels.apply_stroke(config, vid, 2, "M5,10L20,10", value=2, width=1)
    after = client.get(f"/overlay/{vid}/labels/xy/2.png")
    rgba = png(after)
    assert rgba[10, 5:21, 3].min() == 255 and tuple(rgba[10, 8, :3]) == imaging.hex_to_rgb("#ff7f0e")
    assert rgba[..., 3].sum() == 16 * 255
    assert after.headers["Cache-Control"] == "no-cache"
    assert client.get(f"/overlay/{vid}/labels/xy/2.png", headers={"If-None-Match": after.headers["ETag"]}).status_code == 304
    xz = png(client.get(f"/overlay/{vid}/labels/xz/10.png"))   # the same stroke seen from the side
    assert xz.shape == (4, 64, 4) and xz[2, 5:21, 3].min() == 255 and xz[[0, 1, 3], :, 3].max() == 0


def test_ground_truth_overlay(client, volume, raw):
    rgba = png(client.get(f"/overlay/{volume['id']}/gt/xy/1.png"))
    np.testing.assert_array_equal(rgba[..., 3] > 0, raw[1] > 128)


def test_prediction_and_uncertainty_overlays(config, client, volume):
    import zarr

    from app.db import session_scope
    from app.models import Segmentation
    from app.workspace import Workspace

    vid = volume["id"]
    assert client.get(f"/overlay/{vid}/prediction/xy/0.png").data == imaging.TRANSPARENT_PNG   # none yet
    path = Workspace(config.workspace).prediction_path(vid, 7)
    group = zarr.open_group(str(path), mode="w")
    prob = np.zeros((2, 4, 48, 64), np.float16)
    prob[0] = 1.0
    prob[:, 1, :, 32:] = [[[0.1]], [[0.9]]]            # right half of slice 1 is foreground
    prob[:, 1, :24, :8] = 0.5                           # top-left corner maximally uncertain
    group.create_array("prob", data=prob)
    with session_scope(config) as s:
        s.add(Segmentation(volume_id=vid, model_id=None, pred_path=str(path)))
    assert client.get(f"/overlay/{vid}/prediction/xy/1.png").data == imaging.TRANSPARENT_PNG   # unfinished
    group.attrs["complete"] = True
    pred = png(client.get(f"/overlay/{vid}/prediction/xy/1.png"))
    assert (pred[:, 32:, 3] > 200).all() and (pred[24:, :32, 3] == 0).all()
    unc = png(client.get(f"/overlay/{vid}/uncertainty/xy/1.png"))
    assert unc[:24, :8, 3].min() == 255 and unc[:, 40:, 3].max() < 150
    assert png(client.get(f"/overlay/{vid}/prediction/xy/1.png?mid=7")).shape == (48, 64, 4)


def test_thumbnail_route(config, client, project, volume, raw, tmp_path):
    from app.db import session_scope
    from app.models import ALRound, Suggestion

    thumb = tmp_path / "t.png"
    thumb.write_bytes(imaging.encode_png(np.full((8, 8), 77, np.uint8)))
    with session_scope(config) as s:
        r = ALRound(project_id=project["id"], volume_id=volume["id"], strategy="random", k=1, patch_size=8)
        s.add(r)
        s.flush()
        sug = Suggestion(round_id=r.id, rank=0, z=0, y=0, x=0, size=8, thumb_path=str(thumb))
        s.add(sug)
        s.flush()
        sid = sug.id
    assert png(client.get(f"/thumbs/{sid}.png")).max() == 77
    assert client.get(f"/thumbs/{sid + 1}.png").status_code == 404
    thumb.unlink()                                        # a lost thumbnail is rebuilt from the volume
    lo, hi = volume["lo"], volume["hi"]
    expected = np.clip((raw[0, :8, :8].astype(np.float32) - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    assert np.array_equal(png(client.get(f"/thumbs/{sid}.png")), expected)


def test_exports_route_serves_finished_exports_only(config, client, volume):
    from app.services import exports

    res = exports.export(config, volume["id"], "labels", "tiff")
    resp = client.get(f"/exports/{res['filename']}")
    assert resp.status_code == 200 and resp.data == open(res["path"], "rb").read()
    assert f'filename={res["filename"]}' in resp.headers["Content-Disposition"]
    assert client.get("/exports/nothing.tif").status_code == 404
    assert client.get("/exports/activeseg.sqlite").status_code == 404       # in the workspace, not an export
    escape = client.get("/exports/..%2Factiveseg.sqlite")                   # Dash's page catch-all at most
    assert b"SQLite format" not in escape.data and escape.mimetype == "text/html"


def test_page_layout_and_callbacks_are_served(client):
    assert client.get("/").status_code == 200
    layout = client.get("/_dash-layout")
    assert layout.status_code == 200 and b"viewer-graph" in layout.data and b"jobs-table" in layout.data
    deps = client.get("/_dash-dependencies").get_json()
    outputs = " ".join(d["output"] for d in deps)
    assert "viewer-graph.figure" in outputs and "paint-counts.children" in outputs and "volume-select.options" in outputs
    assert client.get("/healthz").get_json() == {"ok": True}


def test_objects_overlay_outlines_each_object_in_its_own_colour(config, client, project, volume):
    from types import SimpleNamespace

    from tests.app.envs import add_segmentation

    vid = volume["id"]
    assert client.get(f"/overlay/{vid}/objects/xy/1.png").data == imaging.TRANSPARENT_PNG   # none yet
    inst = np.zeros((4, 48, 64), np.int32)
    inst[1, 10:20, 10:20] = 1
    inst[1, 30:40, 40:60] = 2
    add_segmentation(SimpleNamespace(config=config, vid=vid), inst, {"count": 2})
    out = png(client.get(f"/overlay/{vid}/objects/xy/1.png"))
    edge = out[..., 3] > 0
    assert edge[10, 10:20].all() and edge[19, 10:20].all() and not edge[11:19, 11:19].any()   # outline only
    assert not edge[:, :8].any() and edge.sum() == 4 * 9 + 2 * 9 + 2 * 19
    assert tuple(out[10, 10, :3]) != tuple(out[30, 40, :3])                                      # one colour each
    side = png(client.get(f"/overlay/{vid}/objects/xz/15.png"))[..., 3] > 0                     # (z, x) plane at y 15
    assert side[1, 10:20].all() and side.sum() == 10


def test_the_object_under_the_cursor_is_named(config, client, project, volume):
    from types import SimpleNamespace

    from tests.app.envs import add_segmentation

    vid = volume["id"]
    assert client.get(f"/objects/{vid}/xy/1/at?r=12&c=12").get_json() == {"id": 0, "text": ""}   # none yet
    inst = np.zeros((4, 48, 64), np.int32)
    inst[1, 10:20, 10:20] = 3
    add_segmentation(SimpleNamespace(config=config, vid=vid), inst, {"count": 1, "voxel_size_known": True})
    hit = client.get(f"/objects/{vid}/xy/1/at?r=12&c=12").get_json()
    assert hit["id"] == 3 and hit["text"].startswith("object 3: ") and hit["text"].endswith("µm³")
    assert client.get(f"/objects/{vid}/xz/12/at?r=1&c=15").get_json()["id"] == 3      # (z, x) plane at y 12
    assert client.get(f"/objects/{vid}/xy/1/at?r=30&c=30").get_json()["text"] == ""
    assert client.get(f"/objects/{vid}/xy/1/at?r=-5&c=900").get_json()["id"] == 0
    bad = client.get(f"/objects/{vid}/xy/1/at?r=abc")
    assert bad.status_code == 400 and b"finite number" in bad.data
    assert client.get(f"/objects/{vid}/xy/1/at").status_code == 400
