"""Pure layout helpers: counted nouns, file sizes, chart axes and titles, page column widths."""
from __future__ import annotations

import pytest

from callbacks.page import columns_view
from layouts import active, charts, effort, jobs, page, results, training
from layouts import ids
from layouts.format import file_size, plural


@pytest.mark.parametrize("n, noun, text", [(0, "patch", "0 patches"), (1, "patch", "1 patch"),
                                           (2, "round", "2 rounds"), (1, "round", "1 round"),
                                           (1200, "stroke", "1,200 strokes"), (3, "class", "3 classes")])
def test_plural(n, noun, text):
    assert plural(n, noun) == text


def test_plural_with_an_irregular_form():
    assert plural(1, "suggested patch", "suggested patches") == "1 suggested patch"
    assert plural(4, "suggested patch", "suggested patches") == "4 suggested patches"


@pytest.mark.parametrize("n, text", [(0, "0 bytes"), (1, "1 byte"), (152, "152 bytes"), (1024, "1 KB"),
                                     (1536, "1.5 KB"), (200 * 1024, "200 KB"), (1023 * 1024, "1023 KB"),
                                     (3 * 2**20 + 2**19, "3.5 MB"), (5 * 2**30, "5 GB")])
def test_file_size_never_rounds_a_small_file_to_zero(n, text):
    assert file_size(n) == text


def test_live_curve_iou_axis_is_zero_to_one_with_round_ticks():
    history = [{"step": s, "loss": 1.0 / s, "val_iou": 0.3 if s % 5 == 0 else None} for s in range(1, 21)]
    fig = training.live_figure(history)
    y2 = fig.layout.yaxis2
    assert tuple(y2.range) == (0, 1) and y2.tickmode == "linear" and (y2.tick0, y2.dtick) == (0, 0.2)
    assert [t.name for t in fig.data] == ["loss", training.HELDOUT_TRACE] and len(fig.data[1].x) == 4
    assert "flatters" in training.HELDOUT_TRACE
    assert [t.name for t in training.live_figure([{"step": 1, "loss": 0.5, "val_iou": None}]).data] == ["loss"]


def test_charts_leave_their_title_to_a_heading_above_the_mode_bar():
    figures = [training.live_figure([]), training.live_figure([{"step": 1, "loss": 1.0}]),
               training.efficiency_figure([{"id": 1, "n_labeled_patches": 2, "n_labeled_pixels": 10,
                                            "val_iou": None, "gt_iou": 0.4}]),
               results.mesh_figure(None), effort.effort_figure([]),
               effort.effort_figure([{"round_id": 1, "seconds": 3.0, "n_strokes": 2}])]
    for fig in figures:
        assert not fig.layout.title.text and fig.layout.margin.t >= 25   # the mode bar's strip
    block = charts.titled_graph("Label efficiency", "g", figures[2], title_id="g-title")
    heading, graph = block.children
    assert (heading.id, heading.children, graph.id) == ("g-title", "Label efficiency", "g")
    assert "select2d" in graph.config["modeBarButtonsToRemove"]


def test_version_rows_show_na_for_missing_iou():
    row = training.version_row({"created": "2026-11-25T10:48:19", "val_iou": 1.0, "est_iou": None, "gt_iou": 0.44412})
    assert (row["created_short"], row["est_iou_text"], row["gt_iou_text"]) == ("11-25 10:48", "n/a", "0.444")
    assert {"name": "est. IoU", "id": "est_iou_text"} in training.VERSION_COLUMNS
    ranged = training.version_row({"created": "2026-11-25T10:48:19", "est_iou": 0.3121, "est_iou_high": 0.48,
                                   "gt_iou": None})
    assert ranged["est_iou_text"] == "0.312-0.480"
    assert not any(c["id"] == "val_iou_text" for c in training.VERSION_COLUMNS)


def test_versions_table_shows_where_each_model_started_from():
    assert {"name": "started from", "id": "started_from"} in training.VERSION_COLUMNS
    row = training.version_row({"created": "2026-11-25T10:48:19", "val_iou": 0.5, "gt_iou": None,
                                "started_from": "pretrained on synthetic EM (1500 steps)"})
    assert row["started_from"] == "pretrained on synthetic EM (1500 steps)"


def _job(status, **kw):
    return {"id": 5, "kind": "pretrain", "status": status, "progress": 420, "total": 1000, "error": None,
            "created": "2026-11-25T10:48:19", "info": {"phase": "pre-training"}, "cancel_requested": False, **kw}


def test_active_jobs_show_a_progress_bar_and_a_cancel_button():
    table = jobs.job_rows([_job("running"), _job("done", id=4)])
    running, done = table.children[1].children
    bar, phase = running.children[3].children
    assert (bar.value, bar.label, phase.children) == (42.0, "42%", "pre-training")
    cancel = running.children[-1].children
    assert cancel.id == {"type": ids.JOB_CANCEL_TYPE, "index": 5} and cancel.children == "Cancel"
    assert done.children[3].children == "42%" and done.children[-1].children == ""
    stopping = jobs.job_rows([_job("running", cancel_requested=True)]).children[1].children[0]
    assert stopping.children[-1].children == "stopping…"


def test_columns_share_the_width_and_the_viewer_takes_the_hidden_data_column():
    for size in ("lg", "xxl"):
        assert page.DATA_WIDTHS[size] + page.VIEWER_WIDTHS[size] <= 12
    assert page.DATA_WIDTHS["xxl"] + page.VIEWER_WIDTHS["xxl"] + page.RIGHT_WIDTHS["xxl"] == 12
    assert page.RIGHT_WIDTHS["xxl"] >= 5          # tabs in one row and tables unscrolled at 1600-1700 px
    shown, hidden = columns_view(2), columns_view(1)
    assert shown == ("", page.VIEWER_WIDTHS["lg"], page.VIEWER_WIDTHS["xxl"], "\u25C0 hide data panel")
    assert hidden[0] == "d-none" and hidden[1] == 12 and hidden[2] == 7 and hidden[3].startswith("show")


def test_the_empty_viewer_fixes_no_range_so_reset_axes_never_returns_to_it():
    """Plotly keeps the first fixed range it draws as the view "reset axes" returns to: the page's
    placeholder (no slice yet) must not be that view, or a reset shows an empty 1 x 1 px corner."""
    from layouts.viewer import make_figure

    empty = make_figure(1, 1)["layout"]
    assert "range" not in empty["xaxis"] and "range" not in empty["yaxis"]
    assert empty["xaxis"]["autorange"] is True and empty["yaxis"]["autorange"] is True
    shown = make_figure(256, 128, "/tiles/1/xy/0.png")["layout"]
    assert shown["xaxis"]["range"] == [-0.5, 255.5] and shown["yaxis"]["range"] == [127.5, -0.5]


def test_a_random_pick_shows_no_score_an_uncertain_one_does():
    row = {"score": 0.973, "strategy": "random"}
    assert active.score_text(row) == "random pick"
    assert active.score_text({**row, "strategy": "entropy"}) == "score 0.973"


def test_the_min_size_units_agree_on_the_page_the_api_and_the_cli():
    """One set of units (``ml.postprocess.SizeUnit``), spelt out where layouts may not import ml/."""
    import typing

    from app.api_models import SegmentIn
    from layouts.results import min_size_units
    from ml.cli import build_parser
    from ml.postprocess import SizeUnit

    units = [u.value for u in SizeUnit]
    assert [o["value"] for o in min_size_units()] == units == [o["value"] for o in min_size_units(False)]
    assert list(typing.get_args(SegmentIn.model_fields["min_size_unit"].annotation)) == units
    stats = build_parser()._subparsers._group_actions[0].choices["stats"]
    assert [a for a in stats._actions if a.dest == "min_size_unit"][0].choices == tuple(units)
