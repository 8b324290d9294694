import math

import pytest

from mcu_lightning.curves.barrier import barrier_vs_line, barrier_vs_max_end, barrier_vs_mean_end, summarize_series

TS = [0.0, 0.25, 0.5, 0.75, 1.0]
LOSS = [1.0, 2.0, 2.5, 1.5, 2.0]  # line: 1.0, 1.25, 1.5, 1.75, 2.0


def test_barriers_hand_values():
    assert barrier_vs_line(TS, LOSS) == (pytest.approx(1.0), 0.5)  # 2.5 - 1.5
    assert barrier_vs_max_end(TS, LOSS) == (pytest.approx(0.5), 0.5)  # 2.5 - 2.0
    assert barrier_vs_mean_end(TS, LOSS) == (pytest.approx(1.0), 0.5)  # 2.5 - 1.5


def test_higher_is_better_is_negated():
    acc = [0.9, 0.5, 0.7, 0.95, 0.8]  # negated: -0.9 -0.5 -0.7 -0.95 -0.8; line at .25: -0.875
    value, t = barrier_vs_line(TS, acc, higher_is_better=True)
    assert (value, t) == (pytest.approx(0.375), 0.25)
    assert barrier_vs_max_end(TS, acc, higher_is_better=True) == (pytest.approx(0.3), 0.25)  # -0.5 - (-0.8)
    assert barrier_vs_mean_end(TS, acc, higher_is_better=True) == (pytest.approx(0.35), 0.25)


def test_summary_lower_is_better():
    s = summarize_series(TS, [1.0, 0.8, 0.6, 1.2, 2.0])
    assert (s.value_t0, s.value_t1, s.best_endpoint) == (1.0, 2.0, 1.0)
    assert (s.best_interior, s.t_best_interior) == (0.6, 0.5)
    assert s.interior_beats_endpoints and s.margin == pytest.approx(0.4)
    assert s.barrier_vs_line == 0.0 and s.t_barrier_vs_line == 0.0  # below the line everywhere
    assert s.barrier_vs_max_end == pytest.approx(0.0) and s.t_barrier_vs_max_end == 1.0


def test_summary_higher_is_better():
    s = summarize_series(TS, [0.9, 0.5, 0.7, 0.95, 0.8], direction="higher")
    assert (s.best_interior, s.t_best_interior, s.best_endpoint) == (0.95, 0.75, 0.9)
    assert s.interior_beats_endpoints and s.margin == pytest.approx(0.05)
    assert s.barrier_vs_line == pytest.approx(0.375)
    assert s.as_dict()["direction"] == "higher"
    assert summarize_series(TS, [0.9, 0.5, 0.7, 0.95, 0.8], True) == s  # a bool is higher_is_better
    worse = summarize_series(TS, [0.9, 0.5, 0.7, 0.6, 0.8], direction="higher")
    assert not worse.interior_beats_endpoints and worse.margin == pytest.approx(-0.2)


def test_nan_rule_and_validation():
    # interior NaN is skipped: the same as dropping the point
    assert barrier_vs_line(TS, [1.0, math.nan, 2.5, 1.5, 2.0]) == barrier_vs_line([0, 0.5, 0.75, 1], [1, 2.5, 1.5, 2])
    with pytest.raises(ValueError, match="NaN at an endpoint"):
        summarize_series(TS, [math.nan, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="start at 0 and end at 1"):
        barrier_vs_line([0.1, 0.5, 1.0], [1, 2, 3])
    with pytest.raises(ValueError, match="strictly increasing"):
        barrier_vs_line([0.0, 0.6, 0.5, 1.0], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="equal length"):
        barrier_vs_line([0.0, 1.0], [1, 2, 3])
    s = summarize_series([0.0, 1.0], [1.0, 2.0])
    assert math.isnan(s.best_interior) and not s.interior_beats_endpoints


def test_summary_closer_to_zero_reads_the_magnitude():
    # privleak: -30 and -20 at the ends, -5 inside (closest to 0), +10 overshoots; |m| = 30, 5, 10, 40, 20
    s = summarize_series(TS, [-30.0, -5.0, 10.0, -40.0, -20.0], direction="zero")
    assert (s.value_t0, s.value_t1, s.best_endpoint) == (-30.0, -20.0, -20.0)  # values keep their sign
    assert (s.best_interior, s.t_best_interior) == (-5.0, 0.25)
    assert s.interior_beats_endpoints and s.margin == pytest.approx(15.0)  # 20 - 5
    assert s.barrier_vs_max_end == pytest.approx(10.0) and s.t_barrier_vs_max_end == 0.75  # 40 - 30
    assert s.barrier_vs_line == pytest.approx(40.0 - 22.5)  # line of |m| at 0.75: 0.25 * 30 + 0.75 * 20


def test_summary_without_direction_is_not_ranked():
    s = summarize_series(TS, [1.0, 0.2, 0.1, 0.3, 2.0], direction="none")
    assert (s.value_t0, s.value_t1) == (1.0, 2.0) and s.direction == "none"
    assert not s.interior_beats_endpoints
    assert all(math.isnan(v) for v in (s.barrier_vs_line, s.barrier_vs_max_end, s.best_interior, s.margin))
    with pytest.raises(ValueError, match="direction must be one of"):
        summarize_series(TS, LOSS, direction="up")


def test_a_forget_loss_that_drops_inside_does_not_beat_the_endpoints():
    # the quickstart case: forget/loss is better higher; an interior that relearned (loss down) is a barrier
    s = summarize_series(TS, [3.0, 1.0, 0.5, 1.0, 3.2], direction="higher")
    assert not s.interior_beats_endpoints and s.margin == pytest.approx(1.0 - 3.2)  # best interior: 1.0
    assert s.barrier_vs_max_end == pytest.approx(2.5) and s.t_barrier_vs_max_end == 0.5  # -0.5 - (-3.0)


def test_a_missing_direction_reads_as_none():  # a column with no better side (a probe's distance) is not ranked
    assert summarize_series(TS, LOSS, direction=None).direction == "none"
