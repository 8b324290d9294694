import math

import pytest
from tiny_lm import label_logit_gradients, one_unlearning_step, two_token_example

from mcu_lightning.losses import WGA

LOG_P = [math.log(1 / 2), math.log(1 / 3)]  # the two answer tokens of two_token_example


def test_defaults_are_open_unlearnings():
    loss = WGA()  # configs/trainer/WGA.yaml: beta 1, alpha 1, gamma 1, retain NLL
    assert (loss.beta, loss.gamma, loss.alpha, loss.retain_loss, loss.needs_reference) == (1.0, 1.0, 1.0, "nll", False)


@pytest.mark.parametrize(("beta", "gamma"), [(1.0, 1.0), (2.0, 0.5), (0.0, 1.0)])
def test_value_by_hand_on_two_tokens(beta, gamma):
    logits, batch = two_token_example()
    out = WGA(beta=beta, gamma=gamma, retain_loss=None)(lambda b: logits, batch)
    forget = sum(math.exp(beta * lp) * lp for lp in LOG_P) / 2
    assert out.logs["forget_loss"].item() == pytest.approx(forget, rel=1e-6)
    assert out.loss.item() == pytest.approx(gamma * forget, rel=1e-6)
    assert out.logs["forget_nll"].item() == pytest.approx(-sum(LOG_P) / 2, rel=1e-6)


def test_retain_term_weighted_by_alpha():
    logits, batch = two_token_example()
    batch["retain"] = batch["forget"]
    out = WGA(alpha=0.5)(lambda b: logits, batch)
    forget = sum(math.exp(lp) * lp for lp in LOG_P) / 2
    assert out.loss.item() == pytest.approx(forget + 0.5 * (-sum(LOG_P) / 2), rel=1e-6)


def test_gradient_pushes_the_answer_logits_down_weighted_by_p():
    # d/dz_y of p^beta log p (weight held fixed) is p^beta (1 - p) / 2 per token: positive, so descent lowers it.
    grads = label_logit_gradients(WGA(retain_loss=None))
    expected = [math.exp(lp) * (1 - math.exp(lp)) / 2 for lp in LOG_P]
    assert grads.tolist() == pytest.approx(expected, rel=1e-5)
    assert (grads > 0).all()


def test_one_step_lowers_the_forget_probability():
    before, after = one_unlearning_step(WGA())
    assert after < before - 0.05, (before, after)
