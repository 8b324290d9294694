"""SCRUB: max/min step values by hand, the step schedule, and a reference that gets no gradient."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mcu_lightning.core.forward import as_policy
from mcu_lightning.losses.scrub import SCRUB, kl_terms

LN3 = math.log(3.0)
# with T = 4, student logits [4 ln 3, 0] give softmax(s / T) = [3/4, 1/4]; a zero teacher gives [1/2, 1/2]:
# KL(teacher || student) = 0.5 ln(0.5 / 0.75) + 0.5 ln(0.5 / 0.25) = 0.5 ln(4/3)
KL_HALF = 0.5 * math.log(4.0 / 3.0)


def fixed(logits: torch.Tensor):
    return lambda batch: logits


def test_max_step_is_negative_scaled_kl_on_forget() -> None:
    student = torch.tensor([[4 * LN3, 0.0], [1.0, 2.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 0.0], [1.0, 2.0]])  # second sample: student == teacher, KL 0
    loss = SCRUB(kd_T=4.0)
    loss.on_train_step(0)
    out = loss(
        fixed(student), {"forget": {"inputs": torch.zeros(2, 1), "labels": torch.tensor([0, 1])}}, fixed(teacher)
    )
    assert out.logs["phase"].item() == 1.0
    assert out.loss.item() == pytest.approx(-16 * KL_HALF / 2)
    torch.testing.assert_close(out.per_sample, torch.tensor([-16 * KL_HALF, 0.0]))
    assert out.logs["forget_kl"].item() == pytest.approx(KL_HALF / 2)
    assert out.loss.item() == pytest.approx(loss.forget_weight * out.per_sample.mean().item())


def test_min_step_is_alpha_kl_plus_gamma_ce_on_retain() -> None:
    student = torch.tensor([[4 * LN3, 0.0]], requires_grad=True)
    teacher = torch.zeros(1, 2)
    loss = SCRUB(alpha=0.5, gamma=2.0, kd_T=4.0)
    loss.on_train_step(1)
    batch = {
        "forget": {"inputs": torch.zeros(1, 1)},
        "retain": {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])},
    }
    out = loss(fixed(student), batch, fixed(teacher))
    ce = math.log(82.0 / 81.0)  # softmax([4 ln 3, 0]) = [81/82, 1/82]
    assert out.logs["phase"].item() == 0.0
    assert out.logs["retain_ce"].item() == pytest.approx(ce)
    assert out.logs["retain_kl"].item() == pytest.approx(KL_HALF)
    assert out.loss.item() == pytest.approx(0.5 * 16 * KL_HALF + 2.0 * ce)
    assert out.per_sample is None


def test_causal_lm_kl_counts_answer_tokens_only() -> None:
    student = torch.tensor([[[9.0, -9.0], [4 * LN3, 0.0], [5.0, 0.0]]])  # [B=1, L=3, V=2]
    teacher = torch.tensor([[[-9.0, 9.0], [0.0, 0.0], [0.0, 5.0]]])
    labels = torch.tensor([[-100, -100, 1]])  # only position 1 predicts an answer token
    kl, _ = kl_terms(student, teacher, labels, temperature=4.0)
    assert kl.item() == pytest.approx(KL_HALF)
    # two samples with 1 and 3 answer positions: shares average to the token mean
    student2 = torch.randn(2, 5, 3)
    teacher2 = torch.randn(2, 5, 3)
    labels2 = torch.tensor([[-100, -100, -100, -100, 1], [-100, 0, 1, 2, -100]])
    kl2, shares2 = kl_terms(student2, teacher2, labels2)
    assert shares2.mean().item() == pytest.approx(kl2.item())
    p = teacher2.softmax(-1)
    token_kl = (p * (p.log() - student2.log_softmax(-1))).sum(-1)
    expected = (token_kl[0, 3] + token_kl[1, 0] + token_kl[1, 1] + token_kl[1, 2]) / 4
    assert kl2.item() == pytest.approx(expected.item(), rel=1e-5)


def test_alternates_as_configured() -> None:
    loss = SCRUB(max_every=3, max_steps_until=7)
    batch = {
        "forget": {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])},
        "retain": {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])},
    }
    logits = fixed(torch.zeros(1, 2, requires_grad=True))
    phases = []
    for step in range(10):
        loss.on_train_step(step)
        phases.append(loss(logits, batch, fixed(torch.zeros(1, 2))).logs["phase"].item())
    assert phases == [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]
    assert [SCRUB(max_every=2).is_max_step(s) for s in range(4)] == [True, False, True, False]
    assert not any(SCRUB(max_every=1, max_steps_until=0).is_max_step(s) for s in range(3))


@pytest.mark.parametrize("step", [0, 1])
def test_reference_receives_no_gradient(step: int) -> None:
    torch.manual_seed(0)
    student, teacher = nn.Linear(3, 4), nn.Linear(3, 4)
    sub = {"inputs": torch.randn(5, 3), "labels": torch.tensor([0, 1, 2, 3, 0])}
    loss = SCRUB()
    loss.on_train_step(step)
    loss(as_policy(student), {"forget": sub, "retain": sub}, as_policy(teacher)).loss.backward()
    assert teacher.weight.grad is None and teacher.bias.grad is None
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0


def test_errors_name_the_fix() -> None:
    loss = SCRUB()
    forget_only = {"forget": {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])}}
    with pytest.raises(ValueError, match="reference"):
        loss(fixed(torch.zeros(1, 2)), forget_only)
    loss.on_train_step(1)
    with pytest.raises(ValueError, match="retain"):
        loss(fixed(torch.zeros(1, 2)), forget_only, fixed(torch.zeros(1, 2)))
    with pytest.raises(ValueError, match="max_every"):
        SCRUB(max_every=0)
