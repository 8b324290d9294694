"""Confidence intervals for a mean over repeated runs (seeds): the one interval every seeded report number carries.

For ``n`` independent runs with values ``x_1..x_n`` (sample mean ``m``, sample standard deviation ``s`` with
``n - 1`` in the denominator), the two-sided ``level`` interval for the population mean is Student's t interval

    m ± t_{(1 + level) / 2, n - 1} · s / sqrt(n)

(e.g. Wasserman, *All of Statistics*, 2004, §10.5; ``scipy.stats.t.ppf`` gives the quantile). It is exact when the
values are normal and, because ``t_{n-1}`` tends to the normal quantile as ``n`` grows, it is used for every ``n``
here: for ``n >= 30`` it differs from the normal-approximation interval by under 4 % of its width, and staying with
one formula keeps every report number comparable. With one run there is no spread to estimate: the interval is
``(nan, nan)`` and its ``method`` says so. Values that are not finite (a metric a run could not compute) are left
out, and ``n`` counts the values actually used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from mcu_lightning.core.errors import InputError

#: The method name an interval from two or more runs carries.
STUDENT_T = "Student t"
#: The method name of a "interval" from a single run (no spread to estimate).
SINGLE_RUN = "single run, no interval"
#: The method name when no run gave a finite value.
NO_RUNS = "no finite value"


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` runs and its two-sided ``level`` confidence interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95
    method: str = STUDENT_T

    @property
    def has_interval(self) -> bool:
        """Whether ``low``/``high`` are numbers (two or more finite runs)."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def half_width(self) -> float:
        """``(high - low) / 2``, nan without an interval."""
        return (self.high - self.low) / 2

    def below(self, tolerance: float) -> bool:
        """Whether the whole interval lies below ``tolerance`` (``high < tolerance``); False without an interval."""
        return self.has_interval and self.high < tolerance

    def above(self, threshold: float) -> bool:
        """Whether the whole interval lies above ``threshold`` (``low > threshold``); False without an interval."""
        return self.has_interval and self.low > threshold

    def format(self, digits: int = 3) -> str:
        """``"m [low, high]"`` with ``digits`` decimals, or just ``"m"`` without an interval."""
        if not self.has_interval:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def __str__(self) -> str:
        return self.format()


def mean_interval(values: Iterable[float], level: float = 0.95) -> Interval:
    """Mean of ``values`` with its Student t confidence interval at ``level`` (formula in the module docstring).

    Non-finite values are dropped (``n`` counts the rest). One value gives ``low = high = nan`` with
    ``method = SINGLE_RUN``; none gives an all-nan interval with ``method = NO_RUNS``.
    """
    if not 0 < level < 1:
        raise InputError(f"confidence level must lie in (0, 1), got {level}")
    x = np.asarray([float(v) for v in values], dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level, NO_RUNS)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, level, SINGLE_RUN)
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf((1 + level) / 2, df=n - 1)) * sem
    return Interval(mean, mean - half, mean + half, n, level, STUDENT_T)
