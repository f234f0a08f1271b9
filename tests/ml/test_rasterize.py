"""Stroke rasteriser: SVG path parsing and exact pixel geometry on known shapes."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from ml.labels.rasterize import parse_svg_path, rasterize_path, rasterize_path_bbox


def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


# -- parsing ------------------------------------------------------------------------
def test_parse_plotly_open_and_closed_paths():
    (open_,) = parse_svg_path("M100.5,200.25L101.3,201.1L102,203")
    np.testing.assert_allclose(open_, [[100.5, 200.25], [101.3, 201.1], [102, 203]])
    (closed,) = parse_svg_path("M0,0L4,0L4,3Z")
    np.testing.assert_allclose(closed, [[0, 0], [4, 0], [4, 3], [0, 0]])  # closed: back to start


def test_parse_exponents_separators_and_implicit_lineto():
    a = parse_svg_path("M1e1,1.0E1L2e+1,10 L 2.5e1 -5e-1")
    np.testing.assert_allclose(a[0], [[10, 10], [20, 10], [25, -0.5]])
    b = parse_svg_path("M 10 10 20 10, 25,-0.5")  # pairs after M are lineto
    np.testing.assert_allclose(b[0], a[0])
    c = parse_svg_path("M1-2L.5.5")  # sign and second dot start new numbers
    np.testing.assert_allclose(c[0], [[1, -2], [0.5, 0.5]])


def test_parse_relative_and_hv_commands():
    rel = parse_svg_path("m10,10 l5,0 0,5 h-5 v-2 z m3,3 l1,1")
    np.testing.assert_allclose(rel[0], [[10, 10], [15, 10], [15, 15], [10, 15], [10, 13], [10, 10]])
    np.testing.assert_allclose(rel[1], [[13, 13], [14, 14]])  # after z, m is relative to the start point
    absolute = parse_svg_path("M10,10 L15,10 L15,15 H10 V13 Z M13,13 L14,14")
    for r, a in zip(rel, absolute):
        np.testing.assert_allclose(r, a)


@pytest.mark.parametrize(
    "bad", ["", "   ", "L1,2", "M1", "M1,2 L3", "M1,2 C1,2,3,4,5,6", "M1,2 L3,x", "5,5"]
)
def test_parse_rejects_bad_paths(bad):
    with pytest.raises(ValueError):
        parse_svg_path(bad)


def test_parse_rejects_non_string():
    with pytest.raises(TypeError):
        parse_svg_path([[1, 2]])


# -- geometry -----------------------------------------------------------------------
def test_horizontal_line_width5_exact_rows_and_round_caps():
    m = rasterize_path("M2,10L20,10", (30, 30), width=5)
    assert np.flatnonzero(m.any(axis=1)).tolist() == [8, 9, 10, 11, 12]
    # centre row: caps reach 2.5 px beyond both ends
    assert np.flatnonzero(m[10]).tolist() == list(range(0, 23))
    # two rows off-centre the round cap is narrower: |dx| <= sqrt(2.5^2 - 2^2) = 1.5
    assert np.flatnonzero(m[8]).tolist() == list(range(1, 22))
    assert np.array_equal(m[8], m[12]) and np.array_equal(m[9], m[11])


def test_single_point_is_a_disc_and_caps_are_discs():
    m = rasterize_path("M15,12", (30, 30), width=7)
    assert np.array_equal(m, disc((30, 30), 12, 15, 3.5))
    line = rasterize_path("M5,5L5,20", (30, 30), width=7)
    assert line[disc((30, 30), 5, 5, 3.5)].all() and line[disc((30, 30), 20, 5, 3.5)].all()
    assert not line[0].any()  # 5 px above the top end: outside the cap radius 3.5


def test_closed_square_filled_area():
    m = rasterize_path("M10,10L30,10L30,30L10,30Z", (40, 40), width=1)
    # pixel centres 10..30 inclusive on both axes; the 1-px outline adds no pixel outside
    assert abs(int(m.sum()) - 21 * 21) <= 4 * 21
    assert m[10:31, 10:31].all() and m.sum() == 441
    outline = rasterize_path("M10,10L30,10L30,30L10,30Z", (40, 40), width=1, fill=False)
    assert outline.sum() == 80 and not outline[12:29, 12:29].any()


def test_open_path_filled_on_request_like_a_lasso():
    tri = "M5,5L25,5L5,25"
    assert not rasterize_path(tri, (30, 30), 1)[10, 10]
    assert rasterize_path(tri, (30, 30), 1, fill=True)[10, 10]


def test_thin_diagonal_is_connected_one_pixel_line():
    for path in ["M0,0L20,13", "M3,28L25,1", "M0,0L7,29"]:
        m = rasterize_path(path, (30, 30), width=0.3)
        _, n = ndi.label(m, structure=np.ones((3, 3)))
        assert n == 1, path
        assert m.sum() <= 2 * 30  # thin: about one pixel per step along the major axis
    diag = rasterize_path("M0,0L10,10", (12, 12), width=1)
    assert np.array_equal(diag, np.eye(12, dtype=bool) & (np.arange(12) <= 10)[:, None])


def test_scale_and_offset_map_view_to_image():
    small = rasterize_path("M5,5L10,5", (40, 40), width=3, scale=2.0, offset=(1.0, 0.0))
    full = rasterize_path("M11,10L21,10", (40, 40), width=3)
    assert np.array_equal(small, full)
    assert small[10, 11] and small[10, 21] and not small[10, 24]


def test_clipping_and_bbox_variant():
    shape = (50, 60)
    path = "M-10,20L30,-5L70,40"
    full = rasterize_path(path, shape, width=4)
    crop, y0, x0 = rasterize_path_bbox(path, shape, width=4)
    assert full.shape == shape and full.any()
    assert y0 >= 0 and x0 >= 0 and y0 + crop.shape[0] <= 50 and x0 + crop.shape[1] <= 60
    rebuilt = np.zeros(shape, bool)
    rebuilt[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    assert np.array_equal(rebuilt, full)
    small, sy, sx = rasterize_path_bbox("M10,10L12,11", shape, width=2)
    assert small.shape == (4, 5) and (sy, sx) == (9, 9)


def test_stroke_outside_image_is_empty():
    crop, y0, x0 = rasterize_path_bbox("M-50,-50L-20,-30", (40, 40), width=5)
    assert crop.shape == (0, 0)
    assert not rasterize_path("M100,100L200,200", (40, 40), width=5).any()


@pytest.mark.parametrize(
    "kwargs",
    [dict(width=0), dict(width=-1), dict(width=float("nan")), dict(width=2, scale=0), dict(width=2, offset=(1,)),
     dict(width=2, shape=(0, 10))],
)
def test_bad_arguments_raise_value_error(kwargs):
    kwargs = {"shape": (20, 20), **kwargs}
    with pytest.raises(ValueError):
        rasterize_path("M1,1L5,5", **kwargs)


def test_fill_matches_point_in_polygon_reference():
    from matplotlib.path import Path as MplPath

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:140, :140]
    centres = np.c_[xx.ravel(), yy.ravel()]
    for _ in range(3):  # random star-shaped polygons with non-integer vertices
        ang = np.sort(rng.uniform(0, 2 * np.pi, 40))
        rad = rng.uniform(10, 60, 40)
        pts = np.c_[70 + rad * np.cos(ang), 70 + rad * np.sin(ang)]
        path = "M" + "L".join(f"{x:.4f},{y:.4f}" for x, y in pts) + "Z"
        inside = MplPath(pts).contains_points(centres).reshape(140, 140)
        outline = rasterize_path(path, (140, 140), 1, fill=False)
        assert np.array_equal(rasterize_path(path, (140, 140), 1), inside | outline)


def test_self_intersecting_lasso_uses_even_odd_rule():
    star = "M50,5L76,85L8,35L92,35L24,85Z"  # pentagram: the centre pentagon is crossed twice
    m = rasterize_path(star, (100, 100), 1)
    assert m[20, 50] and m[70, 30] and not m[50, 50]


def test_long_freehand_stroke_equals_per_segment_union():
    t = np.linspace(0, 4 * np.pi, 300)
    pts = np.c_[100 + 80 * np.cos(t) * t / 12, 100 + 80 * np.sin(t) * t / 12]
    path = "M" + "L".join(f"{x:.3f},{y:.3f}" for x, y in pts)
    union = np.zeros((200, 200), bool)
    for a, b in zip(pts[:-1], pts[1:]):
        union |= rasterize_path(f"M{a[0]},{a[1]}L{b[0]},{b[1]}", (200, 200), 4)
    assert np.array_equal(rasterize_path(path, (200, 200), 4), union)
