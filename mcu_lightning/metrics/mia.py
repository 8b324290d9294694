"""Membership inference: AUROC of a loss-like score between members and non-members, and MUSE's PrivLeak.

Convention (open-unlearning ``mia_auc``): the forget set is labelled 0, the non-members (holdout, test) 1, and the
score is loss-like (higher = less likely a member), so AUC = 1 when the forget data is much more likely than the
non-member data (the model still "remembers" it), and AUC = 0.5 when the attack cannot tell them apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

#: open-unlearning's guard in the PrivLeak denominator.
_EPS = 1e-10


def mia_auc(forget_scores: Sequence[float] | np.ndarray, nonmember_scores: Sequence[float] | np.ndarray) -> float:
    """AUROC of a loss-like MIA score with the forget set as label 0 and non-members as label 1 (open-unlearning).

    AUC = P(score(non-member) > score(forget)) (ties count one half); NaN if either side is empty.
    """
    forget = np.asarray(forget_scores, dtype=np.float64).reshape(-1)
    other = np.asarray(nonmember_scores, dtype=np.float64).reshape(-1)
    keep_f, keep_o = np.isfinite(forget), np.isfinite(other)
    forget, other = forget[keep_f], other[keep_o]
    if not forget.size or not other.size:
        return math.nan
    labels = np.concatenate([np.zeros(forget.size), np.ones(other.size)])
    return float(roc_auc_score(labels, np.concatenate([forget, other])))


def privleak(auc: float, oracle_auc: float) -> float:
    """PrivLeak (MUSE, Shi et al., 2024; open-unlearning ``privleak``), in percent:

    ((1 - AUC) - (1 - AUC_oracle)) / (1 - AUC_oracle) * 100

    with AUCs in the open-unlearning convention above. 0: the model leaks as much as the oracle (retain-only)
    model; negative (down to -100): the forget set is more detectable than under the oracle (under-unlearning);
    positive: less detectable (over-unlearning).
    """
    score, ref = 1.0 - auc, 1.0 - oracle_auc
    if not (math.isfinite(score) and math.isfinite(ref)):
        return math.nan
    return (score - ref) / (ref + _EPS) * 100.0
