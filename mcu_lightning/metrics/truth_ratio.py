"""The truth ratio (TOFU, Maini et al., 2024): per sample, and its two aggregates, as open-unlearning computes them.

Per sample, ``TR = P_perturbed / P_correct`` (:func:`truth_ratio`); a split reports ``closer_to_1`` (the forget
split: 1 when the model no longer prefers the true answer) or ``true_better`` (the other splits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mcu_lightning.metrics.stats import EPS, finite


def truth_ratio(correct_nll: Tensor, perturbed_nll: Tensor) -> Tensor:
    """Truth ratio (TOFU, Maini et al., 2024; open-unlearning ``truth_ratio``), per sample:

    TR = P_perturbed / P_correct,  P_perturbed = exp(-mean_k NLL_k),  P_correct = exp(-NLL_paraphrased)

    with NLL the token-mean answer NLL, i.e. the geometric mean over the K perturbed answers of the length-normalised
    probabilities, divided by the length-normalised probability of the paraphrased answer (the true answer where a
    split has no paraphrase). ``perturbed_nll`` is ``[B, K]``, NaN for missing options (ignored).
    """
    wrong = torch.exp(-perturbed_nll.double().nanmean(dim=1))
    correct = torch.exp(-correct_nll.double())
    return wrong / (correct + EPS)


def truth_ratio_closer_to_1(tr: Sequence[float] | np.ndarray) -> float:
    """Forget-set truth-ratio aggregate (TOFU; open-unlearning ``closer_to_1_better``): mean(min(TR, 1/TR)).

    1 when the model finds paraphrased and perturbed answers equally likely (it no longer knows the fact).
    """
    tr = finite(tr)
    return float(np.mean(np.minimum(tr, 1.0 / (tr + EPS)))) if tr.size else math.nan


def truth_ratio_true_better(tr: Sequence[float] | np.ndarray) -> float:
    """Truth-ratio aggregate of the other splits (TOFU; open-unlearning ``true_better``): mean(max(0, 1 - TR))."""
    tr = finite(tr)
    return float(np.mean(np.maximum(0.0, 1.0 - tr))) if tr.size else math.nan


#: The aggregates a split may choose (``QASuite(split_options={"forget": {"truth_ratio": "closer_to_1"}})``).
TR_AGGREGATORS = {"closer_to_1": truth_ratio_closer_to_1, "true_better": truth_ratio_true_better}
