"""Model utility (TOFU, Maini et al., 2024): the harmonic mean of nine retain-side aggregates."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import stats

#: The nine components of TOFU's model utility: {retain, real authors, world facts} x {prob, ROUGE, truth ratio}.
UTILITY_SPLITS: tuple[str, ...] = ("retain", "real_authors", "world_facts")
UTILITY_METRICS: tuple[str, ...] = ("prob", "rouge", "truth_ratio")


def model_utility(values: Mapping[str, float]) -> tuple[float, list[str]]:
    """Model utility (TOFU; open-unlearning ``hm_aggregate``): the harmonic mean of {retain, real authors, world
    facts} x {probability, ROUGE, truth ratio}, ``n / sum_i 1/v_i`` (0 if any component is 0).

    ``values`` maps ``"split/metric"`` names to aggregates; the mean runs over the finite components that exist.
    Returns the value (NaN when none exists) and the names of the missing components.
    """
    names = [f"{split}/{metric}" for split in UTILITY_SPLITS for metric in UTILITY_METRICS]
    present = [values[name] for name in names if name in values and math.isfinite(values[name])]
    missing = [name for name in names if name not in values or not math.isfinite(values[name])]
    if not present:
        return math.nan, missing
    return float(stats.hmean(np.clip(present, 0.0, None))), missing
