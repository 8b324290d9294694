"""ClassificationSuite on an identity classifier (logits = inputs), so accuracy, CE and the MIA AUC are known."""

import math

import pytest
import torch
from torch import nn

from mcu_lightning.metrics import ClassificationSuite, EvalResult


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def batch(inputs: list[list[float]], labels: list[int], index: list[int]) -> dict:
    return {"inputs": torch.tensor(inputs), "labels": torch.tensor(labels), "index": torch.tensor(index)}


DATA = {
    "forget": batch([[2.0, 0.0], [0.0, 1.0]], [0, 0], [0, 1]),  # right, wrong; CE softplus(-2), softplus(1)
    "retain": batch([[3.0, 0.0], [0.0, 3.0]], [0, 1], [0, 1]),  # both right
    "test": batch([[0.0, 0.0], [2.0, 0.0]], [1, 1], [0, 1]),  # both wrong (ties go to class 0); CE ln 2, softplus(2)
}


def run(suite: ClassificationSuite) -> EvalResult:
    suite.reset()
    for split, data in DATA.items():
        suite.update(nn.Identity(), split, data)
    return suite.compute()


def test_accuracy_loss_and_mia_by_hand():
    agg = run(ClassificationSuite()).aggregates
    assert agg["forget/acc"] == 0.5 and agg["retain/acc"] == 1.0 and agg["test/acc"] == 0.0
    assert agg["forget/loss"] == pytest.approx((softplus(-2) + softplus(1)) / 2)
    assert agg["test/loss"] == pytest.approx((math.log(2) + softplus(2)) / 2)
    # forget CE (0.127, 1.313) vs test CE (0.693, 2.127): 3 of 4 pairs have the test loss higher
    assert agg["mia_auc"] == pytest.approx(0.75)
    assert not any(name.endswith("_gap") for name in agg)


def test_gaps_to_the_oracle(tmp_path):
    EvalResult(aggregates={"forget/acc": 0.25, "test/acc": 0.5, "mia_auc": 0.5}).to_json(tmp_path / "oracle.json")
    with pytest.warns(UserWarning, match="no 'retain/acc'"):
        agg = run(ClassificationSuite(oracle=tmp_path / "oracle.json")).aggregates
    assert agg["forget/acc_gap"] == pytest.approx(0.25)
    assert agg["test/acc_gap"] == pytest.approx(0.5)
    assert agg["mia_auc_gap"] == pytest.approx(0.25)
    assert "retain/acc_gap" not in agg


def test_shape_check():  # directions: tests/metrics/test_directions.py
    suite = ClassificationSuite()
    with pytest.raises(ValueError, match=r"logits \[B, C\]"):
        suite.update(nn.Identity(), "forget", batch([[[1.0]]], [0], [0]))
