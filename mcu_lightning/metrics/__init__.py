"""TOFU-style QA metrics, classification metrics and membership inference, for any model and any point of a curve."""

from mcu_lightning.metrics.classification import ClassificationSuite
from mcu_lightning.metrics.forget_quality import forget_quality, oracle_forget_quality
from mcu_lightning.metrics.intervals import Interval, mean_interval
from mcu_lightning.metrics.mia import mia_auc, privleak
from mcu_lightning.metrics.model_utility import model_utility
from mcu_lightning.metrics.oracle import load_oracle, write_oracle
from mcu_lightning.metrics.qa_suite import QASuite
from mcu_lightning.metrics.rouge import rouge_l_recall
from mcu_lightning.metrics.stats import (
    exact_memorization,
    extraction_strength,
    min_k_score,
    normalised_probability,
    zlib_score,
)
from mcu_lightning.metrics.suite import (
    ARROWS,
    DIRECTIONS,
    Direction,
    EvalResult,
    MetricSuite,
    SampleStore,
    evaluate_suite,
)
from mcu_lightning.metrics.truth_ratio import truth_ratio, truth_ratio_closer_to_1, truth_ratio_true_better

__all__ = [
    "ARROWS",
    "DIRECTIONS",
    "ClassificationSuite",
    "Direction",
    "EvalResult",
    "Interval",
    "MetricSuite",
    "QASuite",
    "SampleStore",
    "evaluate_suite",
    "exact_memorization",
    "extraction_strength",
    "forget_quality",
    "load_oracle",
    "mean_interval",
    "mia_auc",
    "min_k_score",
    "model_utility",
    "normalised_probability",
    "oracle_forget_quality",
    "privleak",
    "rouge_l_recall",
    "truth_ratio",
    "truth_ratio_closer_to_1",
    "truth_ratio_true_better",
    "write_oracle",
    "zlib_score",
]
