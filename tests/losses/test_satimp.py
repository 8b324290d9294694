import math

import pytest
from tiny_lm import label_logit_gradients, one_unlearning_step, two_token_example

from mcu_lightning.losses import SatImp

P = [1 / 2, 1 / 3]  # the two answer tokens' probabilities in two_token_example


def test_defaults_are_open_unlearnings_shipped_config():
    loss = SatImp()  # configs/trainer/SatImp.yaml: beta1 5, beta2 1, alpha 1, gamma 0.1, retain NLL
    assert (loss.beta1, loss.beta2, loss.gamma, loss.alpha, loss.retain_loss) == (5.0, 1.0, 0.1, 1.0, "nll")


@pytest.mark.parametrize(("beta1", "beta2"), [(5.0, 1.0), (1.0, 2.0), (0.0, 0.0)])
def test_value_by_hand_on_two_tokens(beta1, beta2):
    logits, batch = two_token_example()
    out = SatImp(beta1=beta1, beta2=beta2, gamma=1.0, retain_loss=None)(lambda b: logits, batch)
    forget = sum(p**beta1 * (1 - p) ** beta2 * math.log(p) for p in P) / 2
    assert out.logs["forget_loss"].item() == pytest.approx(forget, rel=1e-6)
    assert out.loss.item() == pytest.approx(forget, rel=1e-6)


def test_gamma_and_alpha_weigh_the_terms():
    logits, batch = two_token_example()
    batch["retain"] = batch["forget"]
    out = SatImp()(lambda b: logits, batch)
    forget = sum(p**5 * (1 - p) * math.log(p) for p in P) / 2
    retain = -sum(math.log(p) for p in P) / 2
    assert out.loss.item() == pytest.approx(0.1 * forget + retain, rel=1e-6)


def test_gradient_pushes_the_answer_logits_down():
    grads = label_logit_gradients(SatImp(beta1=1.0, beta2=1.0, gamma=1.0, retain_loss=None))
    expected = [p * (1 - p) * (1 - p) / 2 for p in P]  # weight p (1 - p), d log p / dz_y = 1 - p, mean of 2
    assert grads.tolist() == pytest.approx(expected, rel=1e-5)
    assert (grads > 0).all()


def test_one_step_lowers_the_forget_probability():
    before, after = one_unlearning_step(SatImp(gamma=1.0, alpha=0.1))
    assert after < before - 0.05, (before, after)
