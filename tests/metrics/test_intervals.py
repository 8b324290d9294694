import math

import numpy as np
import pytest
from scipy import stats

from mcu_lightning.metrics.intervals import NO_RUNS, SINGLE_RUN, STUDENT_T, mean_interval


def test_student_t_interval_matches_scipy_for_small_n():
    values = [0.1, 0.4, 0.25]
    iv = mean_interval(values, level=0.95)
    low, high = stats.t.interval(0.95, df=2, loc=np.mean(values), scale=stats.sem(values))
    assert iv.method == STUDENT_T and iv.n == 3
    assert iv.mean == pytest.approx(0.25)
    assert (iv.low, iv.high) == pytest.approx((low, high))
    # t with 2 dof is much wider than the normal interval: the small-n correction is there
    assert iv.half_width > 1.96 * stats.sem(values) * 2


def test_large_n_stays_student_t():
    values = np.random.default_rng(0).normal(size=40)
    iv = mean_interval(values, level=0.9)
    low, high = stats.t.interval(0.9, df=39, loc=values.mean(), scale=stats.sem(values))
    assert iv.method == STUDENT_T and (iv.low, iv.high) == pytest.approx((low, high))


def test_single_run_has_no_interval_and_says_so():
    iv = mean_interval([0.3])
    assert iv.mean == 0.3 and iv.n == 1 and iv.method == SINGLE_RUN
    assert math.isnan(iv.low) and math.isnan(iv.high) and not iv.has_interval
    assert not iv.below(1.0) and iv.format(2) == "0.30"


def test_non_finite_values_are_dropped_and_counted_out():
    iv = mean_interval([1.0, float("nan"), 3.0])
    assert iv.n == 2 and iv.mean == 2.0 and iv.has_interval
    assert mean_interval([float("nan")]).method == NO_RUNS


def test_below_and_above_use_the_whole_interval():
    iv = mean_interval([0.01, 0.02, 0.03])
    assert iv.below(iv.high + 1e-9) and not iv.below(iv.high - 1e-9)
    assert iv.above(iv.low - 1e-9) and not iv.above(iv.mean)
    assert iv.format(3).startswith("0.020 [")


def test_level_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="level"):
        mean_interval([1.0, 2.0], level=95)
