"""bench.quality's simulated users: inside strokes never touch a boundary, edge strokes do."""
from __future__ import annotations

import numpy as np

from bench.quality import edge_strokes, patches, strokes
from ml.quality import boundary_pixels


def _mask() -> np.ndarray:
    m = np.zeros((2, 128, 128), np.uint8)
    m[:, 30:90, 40:100] = 1
    return m


def test_inside_strokes_stay_inside_and_far_from_edges():
    m = _mask()
    lab = strokes(m, 3, "inside", np.random.default_rng(0))
    assert np.count_nonzero(lab == 2) and np.count_nonzero(lab == 1)
    assert not np.any((lab == 2) & (m == 0)) and not np.any((lab == 1) & (m == 1))
    assert sum(boundary_pixels(lab[z]) for z in range(2)) == 0


def test_edge_strokes_label_both_sides_of_an_edge():
    m = _mask()
    lab = edge_strokes(m, 3, np.random.default_rng(0))
    assert not np.any((lab == 2) & (m == 0)) and not np.any((lab == 1) & (m == 1))
    assert sum(boundary_pixels(lab[z]) for z in range(2)) > 0


def test_patches_copy_the_truth():
    m = _mask()
    lab = patches(m, 2, np.random.default_rng(0), size=32)
    assert np.array_equal(lab[lab > 0], m[lab > 0] + 1)


def test_summary_counts_runs_whose_range_holds_the_truth():
    from bench.quality import summarize

    rows = [dict(true=0.3, shown=0.5, heldout=0.5, expected=0.2, calibrated=0.4, thin=None),   # held
            dict(true=0.6, shown=0.7, heldout=0.7, expected=0.2, calibrated=0.4, thin=None),   # missed
            dict(true=0.3, shown=0.9, heldout=0.9, expected=0.1, calibrated=0.5, thin="strokes")]
    text = "\n".join(summarize(rows))
    assert "held the true IoU in 1 of 2 trusted runs (mean width 0.200)" in text
    assert "| range_low | 3 |" in text and "-0.100 |" in text    # the low end never overstated here
    assert "z consensus" not in text                              # rows from before v40 have no true_z
    read = [{**r, "true_z": t} for r, t in zip(rows, (0.35, 0.45, 0.3))]
    text = "\n".join(summarize(read))
    assert "read in z consensus as the app segments (mean true IoU 0.400): the range held it in 1 of 2" in text
    assert "low end mean abs error 0.200, worst overstatement -0.150" in text
    assert "pool half" not in text                                # nor true_pool
    text = "\n".join(summarize([{**r, "true_pool": 0.45} for r in read]))
    assert "(pool half, labels left out) (mean true IoU 0.450): the range held it in 0 of 2" in text
