"""Power iteration and Hutchinson on Hessian-vector products, against a Hessian computed exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.metrics import ClassificationSuite
from mcu_lightning.metrics.suite import EvalResult
from mcu_lightning.probes import ProbeContext, Sharpness, hutchinson_trace, top_eigenvalue
from tests.probes.helpers import same_state, state_copy


def _small_problem() -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    batch = {"inputs": torch.randn(16, 3), "labels": torch.randint(0, 3, (16,)), "index": torch.arange(16)}
    return model, batch


def _exact_hessian(model: nn.Module, batch: dict) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(vector: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(vector, [math.prod(s) for s in shapes])
        params = {n: piece.view(s) for n, piece, s in zip(names, pieces, shapes, strict=True)}
        return batch_nll(functional_call(model, params, (batch["inputs"],)), batch["labels"])

    return hessian(loss)(flat)


def test_top_eigenvalue_and_trace_match_the_exact_hessian() -> None:
    model, batch = _small_problem()
    exact = _exact_hessian(model, batch)
    eigenvalues = torch.linalg.eigvalsh(exact)
    state = state_copy(model)
    context = ProbeContext(ClassificationSuite(), [("retain", batch)], EvalResult(), None, {})
    samples = 400
    out = Sharpness(iterations=300, samples=samples, seed=0)(model, context)
    assert same_state(model, state)
    assert out["probe/sharpness/retain/top_eigenvalue"] == pytest.approx(float(eigenvalues.max()), rel=1e-3)
    # Hutchinson's variance with Rademacher z: 2 * sum_{i != j} H_ij^2; allow four standard errors
    off = exact - torch.diag(torch.diag(exact))
    tolerance = 4 * math.sqrt(2 * float(off.pow(2).sum()) / samples)
    assert abs(out["probe/sharpness/retain/trace"] - float(torch.trace(exact))) < tolerance


def test_shifted_power_iteration_finds_the_top_eigenvalue_under_a_larger_negative_one() -> None:
    matrix = torch.diag(torch.tensor([-5.0, 1.0, 2.0]))
    like = {"v": torch.zeros(3)}

    def hvp(v: dict) -> dict:
        return {"v": matrix @ v["v"]}

    assert top_eigenvalue(hvp, like, 200, torch.Generator().manual_seed(0)) == pytest.approx(2.0, rel=1e-3)
    assert hutchinson_trace(hvp, like, 5, torch.Generator().manual_seed(0)) == pytest.approx(-2.0)  # diagonal: exact


def test_sharpness_on_a_language_model_and_a_missing_split(tiny_lm, qa_data) -> None:
    batches = [("retain", next(iter(qa_data.eval_dataloader("retain"))))]
    context = ProbeContext(ClassificationSuite(), batches, EvalResult(), qa_data, {})
    out = Sharpness(iterations=3, samples=2, include=r"layers\.0\.mlp")(tiny_lm, context)
    assert out["probe/sharpness/retain/top_eigenvalue"] > 0
    with pytest.raises(ValueError, match="no batches of split 'forget'"):
        Sharpness(split="forget")(tiny_lm, context)
