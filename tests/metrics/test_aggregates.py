"""Aggregations by hand: truth-ratio aggregates, ROUGE-L recall, forget quality, model utility, MIA, PrivLeak."""

import math

import pytest
from scipy import stats

from mcu_lightning.metrics.forget_quality import forget_quality
from mcu_lightning.metrics.mia import mia_auc, privleak
from mcu_lightning.metrics.model_utility import model_utility
from mcu_lightning.metrics.rouge import rouge_l_recall
from mcu_lightning.metrics.truth_ratio import truth_ratio_closer_to_1, truth_ratio_true_better


def test_truth_ratio_aggregates():
    tr = [0.5, 2.0, 1.0, 4.0]
    assert truth_ratio_closer_to_1(tr) == pytest.approx((0.5 + 0.5 + 1.0 + 0.25) / 4)
    assert truth_ratio_true_better(tr) == pytest.approx((0.5 + 0.0 + 0.0 + 0.0) / 4)
    assert math.isnan(truth_ratio_true_better([math.nan]))


def test_rouge_l_recall_hand_values():
    preds = ["the cat sat on the mat", "cats running", "nothing here"]
    refs = ["the cat was on the mat", "cat run", "the answer"]
    # LCS("the cat on the mat") = 5 of 6 reference words; stemming matches cats/cat and running/run
    assert rouge_l_recall(preds, refs) == pytest.approx([5 / 6, 1.0, 0.0])


def test_forget_quality_is_the_ks_p_value():
    assert forget_quality([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    # disjoint samples of 3: exact two-sided p-value 2 / C(6, 3) = 0.1
    assert forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)
    a, b = [0.1, 0.4, 0.35, 0.8, 0.9], [0.2, 0.3, 0.5, 0.55]
    assert forget_quality(a, b) == pytest.approx(stats.ks_2samp(a, b).pvalue)
    assert math.isnan(forget_quality([1.0], []))


def test_model_utility_is_the_harmonic_mean_of_the_nine_components():
    splits, metrics = ("retain", "real_authors", "world_facts"), ("prob", "rouge", "truth_ratio")
    values = {f"{s}/{m}": 0.5 for s in splits for m in metrics}
    values["retain/prob"] = 0.25
    values["forget/prob"] = 0.01  # not a component
    utility, missing = model_utility(values)
    assert utility == pytest.approx(9 / (4 + 8 * 2)) and missing == []


def test_model_utility_names_its_missing_components():
    utility, missing = model_utility({"retain/prob": 0.5, "retain/rouge": 0.25, "retain/truth_ratio": math.nan})
    assert utility == pytest.approx(2 / (2 + 4))
    assert "retain/truth_ratio" in missing and "world_facts/rouge" in missing and len(missing) == 7
    assert math.isnan(model_utility({})[0])


def test_mia_auc_labels_forget_zero_and_uses_loss_like_scores():
    # pairs with holdout > forget: (3>1, 3>2, 1.5>1) of 4
    assert mia_auc([1.0, 2.0], [3.0, 1.5]) == pytest.approx(0.75)
    assert mia_auc([1.0, 1.0], [1.0, 1.0]) == pytest.approx(0.5)
    assert mia_auc([0.1, 0.2], [5.0, 6.0]) == pytest.approx(1.0)  # forget far more likely: full leak
    assert math.isnan(mia_auc([], [1.0]))


def test_privleak_sign_follows_open_unlearning():
    # a model whose forget set is more detectable than under the oracle has negative PrivLeak (MUSE, open-unlearning)
    assert privleak(0.9, 0.5) == pytest.approx(-80.0)
    assert privleak(1.0, 0.5) == pytest.approx(-100.0)
    assert privleak(0.5, 0.5) == pytest.approx(0.0)
    assert privleak(0.3, 0.5) == pytest.approx(40.0)
    assert math.isnan(privleak(math.nan, 0.5))
