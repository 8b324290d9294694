"""Forget quality (TOFU, Maini et al., 2024): the KS test of the model's forget-set truth ratios against the oracle's.

:func:`forget_quality` is the formula; :func:`oracle_forget_quality` takes the oracle side from the oracle's
evaluation file (or the model itself when it is the oracle) and says so when that file lacks the truth ratios.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

from mcu_lightning.metrics.oracle import ORACLE_SELF, OracleSource, oracle_values
from mcu_lightning.metrics.stats import finite
from mcu_lightning.metrics.suite import EvalResult


def forget_quality(model_tr: Sequence[float] | np.ndarray, oracle_tr: Sequence[float] | np.ndarray) -> float:
    """Forget quality (TOFU, Maini et al., 2024; open-unlearning ``ks_test``): the p-value of the two-sample
    Kolmogorov-Smirnov test between the forget-set truth ratios of the model and of the oracle (retain-only) model.

    High (near 1): the two distributions are indistinguishable; TOFU reads log10 of it.
    """
    model_tr, oracle_tr = finite(model_tr), finite(oracle_tr)
    if not model_tr.size or not oracle_tr.size:
        return math.nan
    return float(stats.ks_2samp(model_tr, oracle_tr).pvalue)


def oracle_forget_quality(
    model_tr: Sequence[float] | np.ndarray, oracle: EvalResult | None, source: OracleSource | None, split: str
) -> float:
    """Forget quality of ``model_tr`` (the forget ``split``'s per-sample truth ratios) against the oracle's.

    ``source`` is the suite's oracle setting: ``"self"`` compares the model with itself (forget quality 1);
    otherwise ``oracle`` (the loaded file) must hold per-sample truth ratios of ``split``, or the value is NaN with
    a warning naming the fix.
    """
    oracle_tr = model_tr if source == ORACLE_SELF else oracle_values(oracle, split, "truth_ratio")
    if oracle_tr is None:
        warnings.warn(
            "forget_quality needs the oracle's per-sample truth ratios: pass suite.oracle=<oracle test JSON> "
            "(the retain-only model's `mcu test` writes it); reporting NaN",
            stacklevel=4,
        )
        return math.nan
    return forget_quality(model_tr, oracle_tr)
