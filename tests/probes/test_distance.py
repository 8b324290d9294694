"""Distances from the base and the endpoints, and task-vector cosines, on weights whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mcu_lightning.metrics import ClassificationSuite
from mcu_lightning.metrics.suite import EvalResult
from mcu_lightning.probes import Distance, ProbeContext, l2_distance, task_vector_cosine


def _weights(model: nn.Module, value: float) -> dict[str, torch.Tensor]:
    return {name: torch.full_like(p, value) for name, p in model.named_parameters()}


def test_distance_and_cosine_at_a_point_between_base_and_an_endpoint() -> None:
    model = nn.Linear(3, 2)  # 8 parameters
    base, end0, end1 = _weights(model, 0.0), _weights(model, 2.0), _weights(model, -1.0)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)  # theta = base + (end0 - base) / 2
    context = ProbeContext(ClassificationSuite(), [], EvalResult(), None, {"base": base, "end0": end0, "end1": end1})
    out = Distance()(model, context)
    assert out["probe/distance/l2_base"] == pytest.approx(math.sqrt(8))
    assert out["probe/distance/l2_end0"] == pytest.approx(math.sqrt(8))
    assert out["probe/distance/l2_end1"] == pytest.approx(math.sqrt(8 * 4))
    assert out["probe/distance/cos_end0"] == pytest.approx(1.0)
    assert out["probe/distance/cos_end1"] == pytest.approx(-1.0)


def test_cosine_with_a_zero_task_vector_is_nan_and_names_must_be_shared() -> None:
    theta = {"w": torch.tensor([1.0, 0.0])}
    base = {"w": torch.tensor([0.0, 0.0])}
    assert math.isnan(task_vector_cosine(theta, base, base))
    assert task_vector_cosine(theta, {"w": torch.tensor([0.0, 3.0])}, base) == pytest.approx(0.0)
    assert math.isnan(l2_distance(theta, {"other": torch.zeros(2)}))


def test_distance_without_references_says_so_and_reports_nothing() -> None:
    context = ProbeContext(ClassificationSuite(), [], EvalResult(), None, {})
    with pytest.warns(UserWarning, match="no reference weights"):
        assert Distance()(nn.Linear(2, 2), context) == {}
