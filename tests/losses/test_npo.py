import copy
import math

import pytest
import torch
from tiny_lm import tiny_llama
from torch import nn

from mcu_lightning.core.forward import as_policy, call_model
from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.losses import NPO, npo_loss


def logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def npo_by_hand(logp: list[float], logp_ref: list[float], beta: float) -> float:
    terms = [-(2 / beta) * logsigmoid(-beta * (lp - lr)) for lp, lr in zip(logp, logp_ref, strict=True)]
    return sum(terms) / len(terms)


def classification_batch() -> dict:
    return {"forget": {"inputs": torch.zeros(2, 1), "labels": torch.tensor([1, 0])}}


def policy(batch):
    # Sample 0: p(1) = 3/4; sample 1: p(0) = 1/2.
    return torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])


def reference(batch):
    # Uniform: p = 1/2 for both.
    return torch.zeros(2, 2)


@pytest.mark.parametrize("beta", [0.1, 1.0, 3.0])
def test_classification_value_matches_the_formula(beta):
    out = NPO(beta=beta, retain_loss=None)(policy, classification_batch(), reference)
    expected = npo_by_hand([math.log(0.75), math.log(0.5)], [math.log(0.5), math.log(0.5)], beta)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.logs["npo_log_ratio"].item() == pytest.approx(math.log(1.5) / 2, rel=1e-6)
    assert out.per_sample.shape == (2,)


def test_lm_uses_summed_answer_log_probs():
    # V = 4; the policy puts ln 3 on the target token (p = 3/6 = 1/2), the reference is uniform (p = 1/4).
    labels = torch.tensor([[-100, 2, 1], [-100, -100, 3]])
    logits = torch.zeros(2, 3, 4)
    for b in range(2):
        for t in range(2):
            if labels[b, t + 1] != -100:
                logits[b, t, labels[b, t + 1]] = math.log(3.0)
    batch = {"forget": {"input_ids": torch.zeros(2, 3, dtype=torch.long), "labels": labels}}
    out = NPO(beta=0.5, retain_loss=None)(lambda b: logits, batch, lambda b: torch.zeros(2, 3, 4))
    expected = npo_by_hand([2 * math.log(0.5), math.log(0.5)], [2 * math.log(0.25), math.log(0.25)], 0.5)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.logs["forget_nll"].item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_at_the_reference_each_term_is_two_ln2_over_beta():
    assert npo_loss(torch.tensor([-3.0]), torch.tensor([-3.0]), beta=0.1).item() == pytest.approx(20 * math.log(2))


def test_gamma_alpha_and_retain_term():
    batch = {**classification_batch(), "retain": {"inputs": torch.zeros(2, 1), "labels": torch.tensor([0, 0])}}
    out = NPO(beta=1.0, gamma=2.0, alpha=0.5)(policy, batch, reference)
    forget = npo_by_hand([math.log(0.75), math.log(0.5)], [math.log(0.5), math.log(0.5)], 1.0)
    retain = (-math.log(0.25) - math.log(0.5)) / 2
    assert out.loss.item() == pytest.approx(2.0 * forget + 0.5 * retain, rel=1e-6)
    assert out.logs["retain_loss"].item() == pytest.approx(retain, rel=1e-6)
    kl = NPO(beta=1.0, retain_loss="kl")(policy, batch, reference)
    kl_hand = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)) / 2  # KL(uniform || policy), sample 1 is 0
    assert kl.logs["retain_loss"].item() == pytest.approx(kl_hand, rel=1e-6)


def test_reference_is_required_and_gets_no_gradient():
    with pytest.raises(ValueError, match="NPO needs a reference model"):
        NPO()(policy, classification_batch())
    torch.manual_seed(0)
    model, ref = nn.Linear(3, 2), nn.Linear(3, 2)
    batch = {"forget": {"inputs": torch.randn(4, 3), "labels": torch.tensor([0, 1, 0, 1])}}
    NPO()(as_policy(model), batch, as_policy(ref)).loss.backward()
    assert model.weight.grad is not None
    assert all(p.grad is None for p in ref.parameters())


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="beta must be positive"):
        NPO(beta=0.0)
    with pytest.raises(ValueError, match="retain_loss must be one of"):
        NPO(retain_loss="mse")


def test_sgd_steps_raise_the_forget_nll():
    model = tiny_llama(0)
    ref = copy.deepcopy(model).requires_grad_(False)
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 32, (4, 8), generator=generator)
    labels = input_ids.clone()
    labels[:, :3] = -100
    forget = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    before = batch_nll(call_model(model, forget), labels).item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = NPO(retain_loss=None)
    for _ in range(5):
        optimizer.zero_grad()
        loss(as_policy(model), {"forget": forget}, as_policy(ref)).loss.backward()
        optimizer.step()
    after = batch_nll(call_model(model, forget), labels).item()
    assert after > before + 0.1
    assert all(p.grad is None for p in ref.parameters())
