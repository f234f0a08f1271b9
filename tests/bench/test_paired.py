"""The paired-difference summary every benchmark comparison reads."""
import math

import pytest

from bench.al_pool import paired_text
from bench.paired import paired_stats


def test_paired_stats_reads_sample_sd_and_its_standard_error():
    s = paired_stats([0.1, 0.3, -0.1])
    assert s["n"] == 3 and s["up"] == 2
    assert s["mean"] == pytest.approx(0.1)
    assert s["sd"] == pytest.approx(0.2)  # sample sd: sqrt((0 + 0.04 + 0.04) / 2)
    assert s["se"] == pytest.approx(0.2 / math.sqrt(3))


def test_a_tie_does_not_count_as_up_and_one_seed_is_refused():
    assert paired_stats([0.0, 0.2])["up"] == 1
    with pytest.raises(ValueError, match="2 or more"):
        paired_stats([0.1])


def test_pooled_gains_print_through_the_same_numbers():
    assert paired_text({"0": 0.1, "1": 0.3, "2": -0.1}) == "+10.0 % (se 11.5, 2 of 3 up)"
    assert paired_text({"0": 0.1}) == "n/a"
