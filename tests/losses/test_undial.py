import math

import pytest
import torch
from tiny_lm import label_logit_gradients, one_unlearning_step, two_token_example

from mcu_lightning.losses import UNDIAL


def undial_by_hand(beta: float) -> float:
    """The reference equals the policy: position 0 logits [ln 2, 0, 0], label 0; position 1 uniform, label 1."""
    p0, p1 = [1 / 2, 1 / 4, 1 / 4], [1 / 3] * 3
    e = math.exp(-beta)
    q0 = [2 * e / (2 * e + 2), 1 / (2 * e + 2), 1 / (2 * e + 2)]
    q1 = [1 / (2 + e), e / (2 + e), 1 / (2 + e)]
    ce0 = -sum(q * math.log(p) for q, p in zip(q0, p0, strict=True))
    ce1 = -sum(q * math.log(p) for q, p in zip(q1, p1, strict=True))
    return (ce0 + ce1) / 2


def test_defaults_are_open_unlearnings():
    loss = UNDIAL()  # configs/trainer/UNDIAL.yaml: beta 10, gamma 1, alpha 0, retain NLL
    assert (loss.beta, loss.gamma, loss.alpha, loss.retain_loss, loss.needs_reference) == (10.0, 1.0, 0.0, "nll", True)


@pytest.mark.parametrize("beta", [10.0, 1.0, 0.0])
def test_value_by_hand_on_two_tokens(beta):
    logits, batch = two_token_example()
    out = UNDIAL(beta=beta, retain_loss=None)(lambda b: logits, batch, lambda b: logits.clone())
    assert out.loss.item() == pytest.approx(undial_by_hand(beta), rel=1e-6)


def test_the_reference_is_required():
    logits, batch = two_token_example()
    with pytest.raises(ValueError, match="needs a reference model"):
        UNDIAL()(lambda b: logits, batch)


def test_gradient_pushes_the_answer_logits_down_and_vanishes_at_beta_zero():
    logits, _ = two_token_example()
    grads = label_logit_gradients(UNDIAL(retain_loss=None), logits.clone())
    assert (grads > 0).all()
    # p - q at the label, over 2 tokens; beta = 0: the target is the policy itself, no gradient.
    e = math.exp(-10.0)
    assert grads.tolist() == pytest.approx([(0.5 - e / (e + 1)) / 2, (1 / 3 - e / (2 + e)) / 2], rel=1e-5)
    at_zero = label_logit_gradients(UNDIAL(beta=0.0, retain_loss=None), logits.clone())
    assert torch.allclose(at_zero, torch.zeros(2), atol=1e-7)


def test_one_step_lowers_the_forget_probability():
    before, after = one_unlearning_step(UNDIAL())
    assert after < before - 0.05, (before, after)


def test_compat_open_unlearning_is_their_loss_over_every_position():
    torch.manual_seed(0)
    logits, ref = torch.randn(2, 5, 101), torch.randn(2, 5, 101)
    labels = torch.tensor([[-100, -100, 4, 7, 9], [-100, -100, -100, 3, -100]])  # prompts, answers, padding
    batch = {"forget": {"input_ids": torch.zeros(2, 5, dtype=torch.long), "labels": labels}}
    # open-unlearning's compute_undial_loss, literally: -100 indexes token 101 - 100 = 1, the mean runs over all B (L-1)
    shift_labels, z, z_ref = labels[:, 1:], logits[:, :-1], ref[:, :-1]
    mask = torch.zeros_like(z_ref)
    mask[torch.arange(2).view(-1, 1, 1), torch.arange(4).view(1, -1, 1), shift_labels.unsqueeze(-1)] = 1.0
    soft = torch.softmax(z_ref - 10.0 * mask, dim=-1)
    theirs = torch.nn.functional.cross_entropy(z.reshape(-1, 101), soft.reshape(-1, 101))
    loss = UNDIAL(retain_loss=None)
    ours = loss(lambda b: logits, batch, lambda b: ref).loss
    loss.set_compat("open_unlearning")
    assert loss(lambda b: logits, batch, lambda b: ref).loss.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert abs(ours.item() - theirs.item()) > 1e-3  # the default averages over the answer tokens only
    with pytest.raises(ValueError, match="at least 100 tokens"):
        small = torch.zeros(1, 3, 3)
        loss(lambda b: small, {"forget": {"labels": torch.tensor([[-100, -100, 1]])}}, lambda b: small)
