import math

import pytest
import torch
from torch import nn

from mcu_lightning.core.forward import as_policy
from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.losses.forget_retain import (
    check_retain_kind,
    forget_retain_output,
    optional_retain_term,
    retain_term,
)
from mcu_lightning.losses.kl import kl_to_reference


def test_classification_kl_matches_hand_computation():
    policy_logits = torch.zeros(1, 2)  # (1/2, 1/2)
    ref_logits = torch.tensor([[math.log(3.0), 0.0]])  # (3/4, 1/4)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    batch = {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])}
    value = retain_term(lambda b: policy_logits, batch, kind="kl", reference=lambda b: ref_logits)
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_lm_kl_is_a_token_mean_over_answer_positions_only():
    # Position t predicts token t+1; labels[:, 1:] != -100 selects positions 1 and 2 of sample 0 only.
    labels = torch.tensor([[-100, -100, 5, 6], [-100, -100, -100, -100]])
    logits = torch.zeros(2, 4, 2)
    ref = torch.zeros(2, 4, 2)
    ref[0, 1] = torch.tensor([math.log(3.0), 0.0])  # counted: KL((3/4,1/4) || (1/2,1/2))
    ref[0, 0] = torch.tensor([9.0, 0.0])  # prompt position: not counted
    ref[1, 2] = torch.tensor([0.0, 9.0])  # sample without answer: not counted
    ref[0, 3] = torch.tensor([0.0, 9.0])  # last position predicts nothing: not counted
    one = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kl_to_reference(logits, ref, labels).item() == pytest.approx(one / 2, abs=1e-6)


def test_kl_is_zero_when_policy_is_reference():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, 1, 2, 3, -100], [-100, -100, 4, 5, 6]])
    assert kl_to_reference(logits, logits.clone(), labels).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_to_reference(logits[:, 0], logits[:, 0].clone(), labels[:, 0]).item() == pytest.approx(0.0, abs=1e-6)


def test_nll_kind_is_batch_nll():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[-100, 1, 2, 3], [-100, -100, 4, -100]])
    value = retain_term(lambda b: logits, {"input_ids": torch.zeros(2, 4, dtype=torch.long), "labels": labels})
    assert value.item() == pytest.approx(batch_nll(logits, labels).item(), abs=1e-6)


def test_reference_receives_no_gradient():
    torch.manual_seed(0)
    policy, reference = nn.Linear(3, 4), nn.Linear(3, 4)
    batch = {"inputs": torch.randn(5, 3), "labels": torch.randint(0, 4, (5,))}
    retain_term(as_policy(policy), batch, kind="kl", reference=as_policy(reference)).backward()
    assert policy.weight.grad is not None and policy.weight.grad.abs().sum() > 0
    assert reference.weight.grad is None and reference.bias.grad is None


def test_kl_without_reference_and_bad_kind_raise():
    batch = {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match="needs a reference model"):
        retain_term(lambda b: torch.zeros(1, 2), batch, kind="kl")
    with pytest.raises(ValueError, match=r"retain_loss must be one of \['nll', 'kl'\], got 'l2'"):
        check_retain_kind("l2", "GradDiff")
    assert check_retain_kind("KL", "GradDiff") == "kl"
    assert check_retain_kind(None, "NPO", allow_none=True) is None


def test_optional_retain_term_skips_missing_retain():
    assert optional_retain_term(lambda b: torch.zeros(1, 2), {"forget": {}}, "nll") is None
    batch = {"retain": {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])}}
    assert optional_retain_term(lambda b: torch.zeros(1, 2), batch, None) is None
    assert optional_retain_term(lambda b: torch.zeros(1, 2), batch, "nll").item() == pytest.approx(math.log(2.0))


def test_forget_retain_output_weights_and_logs():
    per_sample = torch.tensor([1.0, 3.0], requires_grad=True)
    out = forget_retain_output(
        per_sample, gamma=0.5, retain=torch.tensor(4.0), alpha=0.25, logs={"x": torch.tensor(7.0)}
    )
    assert out.loss.item() == pytest.approx(0.5 * 2.0 + 0.25 * 4.0)
    assert {k: v.item() for k, v in out.logs.items()} == {"forget_loss": 2.0, "retain_loss": 4.0, "x": 7.0}
    assert out.per_sample is per_sample
    assert not out.logs["forget_loss"].requires_grad
