import math

import pytest
import torch

from mcu_lightning.losses import SimNPO, simnpo_loss


def logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def simnpo_by_hand(mean_nlls: list[float], beta: float, delta: float) -> float:
    return sum(-(2 / beta) * logsigmoid(beta * (x - delta)) for x in mean_nlls) / len(mean_nlls)


def lm_batch() -> tuple[torch.Tensor, dict]:
    """V = 4. Sample 0: one answer token at p = 1/2. Sample 1: three answer tokens at p = 1/4 (uniform)."""
    labels = torch.tensor([[-100, -100, -100, 1], [-100, 2, 3, 0]])
    logits = torch.zeros(2, 4, 4)
    logits[0, 2, 1] = math.log(3.0)
    return logits, {"forget": {"input_ids": torch.zeros(2, 4, dtype=torch.long), "labels": labels}}


def test_defaults_follow_design():
    loss = SimNPO()
    assert (loss.beta, loss.gamma, loss.delta, loss.alpha, loss.retain_loss) == (4.5, 0.125, 0.0, 1.0, "nll")
    assert loss.needs_reference is False
    assert SimNPO(retain_loss="kl").needs_reference is True


def test_length_normalisation():
    # Uniform logits: sequences of 1 and 3 answer tokens have the same S/|y| = ln 4, hence equal terms.
    labels = torch.tensor([[-100, -100, -100, 1], [-100, 2, 3, 0]])
    batch = {"forget": {"input_ids": torch.zeros(2, 4, dtype=torch.long), "labels": labels}}
    out = SimNPO(retain_loss=None)(lambda b: torch.zeros(2, 4, 4), batch)
    assert out.per_sample[0].item() == pytest.approx(out.per_sample[1].item(), rel=1e-6)
    assert out.per_sample[0].item() == pytest.approx(simnpo_by_hand([math.log(4.0)], 4.5, 0.0), rel=1e-6)


@pytest.mark.parametrize(("beta", "gamma", "delta"), [(4.5, 0.125, 0.0), (1.0, 1.0, 0.5), (2.5, 0.3, 2.0)])
def test_value_matches_the_formula(beta, gamma, delta):
    logits, batch = lm_batch()
    out = SimNPO(beta=beta, gamma=gamma, delta=delta, retain_loss=None)(lambda b: logits, batch)
    forget = simnpo_by_hand([math.log(2.0), math.log(4.0)], beta, delta)
    assert out.logs["forget_loss"].item() == pytest.approx(forget, rel=1e-6)
    assert out.loss.item() == pytest.approx(gamma * forget, rel=1e-6)
    # forget_nll is the token mean over the batch: (ln 2 + 3 ln 4) / 4.
    assert out.logs["forget_nll"].item() == pytest.approx((math.log(2.0) + 3 * math.log(4.0)) / 4, rel=1e-6)


def test_retain_term_weighted_by_alpha():
    logits, batch = lm_batch()
    batch["retain"] = batch["forget"]
    out = SimNPO(alpha=0.5)(lambda b: logits, batch)
    forget = simnpo_by_hand([math.log(2.0), math.log(4.0)], 4.5, 0.0)
    retain = (math.log(2.0) + 3 * math.log(4.0)) / 4
    assert out.loss.item() == pytest.approx(0.125 * forget + 0.5 * retain, rel=1e-6)


def test_minimising_raises_the_nll():
    # d/dS of the per-sample term is negative: lowering the loss means raising the forget NLL.
    nll = torch.tensor([2.0], requires_grad=True)
    simnpo_loss(nll, torch.tensor([4.0])).sum().backward()
    assert nll.grad.item() < 0
