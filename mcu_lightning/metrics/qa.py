"""Aggregations of the TOFU QA metrics (Maini et al., 2024), as open-unlearning computes them.

Per-sample values come from :mod:`mcu_lightning.metrics.stats`; these functions turn them into the numbers a
TOFU table reports: truth-ratio aggregates, ROUGE-L recall, forget quality and model utility.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from rouge_score import rouge_scorer
from scipy import stats

from mcu_lightning.metrics.stats import EPS

#: The nine components of TOFU's model utility: {retain, real authors, world facts} x {prob, ROUGE, truth ratio}.
UTILITY_SPLITS: tuple[str, ...] = ("retain", "real_authors", "world_facts")
UTILITY_METRICS: tuple[str, ...] = ("prob", "rouge", "truth_ratio")


def truth_ratio_closer_to_1(tr: Sequence[float] | np.ndarray) -> float:
    """Forget-set truth-ratio aggregate (TOFU; open-unlearning ``closer_to_1_better``): mean(min(TR, 1/TR)).

    1 when the model finds paraphrased and perturbed answers equally likely (it no longer knows the fact).
    """
    tr = _finite(tr)
    return float(np.mean(np.minimum(tr, 1.0 / (tr + EPS)))) if tr.size else math.nan


def truth_ratio_true_better(tr: Sequence[float] | np.ndarray) -> float:
    """Truth-ratio aggregate of the other splits (TOFU; open-unlearning ``true_better``): mean(max(0, 1 - TR))."""
    tr = _finite(tr)
    return float(np.mean(np.maximum(0.0, 1.0 - tr))) if tr.size else math.nan


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L recall (Lin, 2004) of each generation against its reference answer, Porter-stemmed, as TOFU reports
    it (open-unlearning ``rougeL_recall``): LCS(prediction, reference) / |reference| in words.
    """
    if len(predictions) != len(references):
        raise ValueError(f"ROUGE got {len(predictions)} generations for {len(references)} answers")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references, strict=True)]


def forget_quality(model_tr: Sequence[float] | np.ndarray, oracle_tr: Sequence[float] | np.ndarray) -> float:
    """Forget quality (TOFU, Maini et al., 2024; open-unlearning ``ks_test``): the p-value of the two-sample
    Kolmogorov-Smirnov test between the forget-set truth ratios of the model and of the oracle (retain-only) model.

    High (near 1): the two distributions are indistinguishable; TOFU reads log10 of it.
    """
    model_tr, oracle_tr = _finite(model_tr), _finite(oracle_tr)
    if not model_tr.size or not oracle_tr.size:
        return math.nan
    return float(stats.ks_2samp(model_tr, oracle_tr).pvalue)


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


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    return array[np.isfinite(array)]
