import math

import pytest
import torch
from tiny_lm import label_logit_gradients, one_unlearning_step, qa_batch, tiny_llama, two_token_example

from mcu_lightning.core.forward import as_policy
from mcu_lightning.losses import CEU

# Position 0: p = [1/2, 1/4, 1/4], label 0 -> target [0, 1/2, 1/2], CE = ln 4.
# Position 1: uniform over 3, label 1 -> target [1/2, 0, 1/2], CE = ln 3.


def test_defaults_are_open_unlearnings():
    loss = CEU()  # configs/trainer/CEU.yaml: ignore_first_n_answer_tokens 1, no retain term
    assert (loss.ignore_first_n_answer_tokens, loss.retain_loss, loss.needs_reference) == (1, None, False)


@pytest.mark.parametrize(("skip", "expected"), [(0, (math.log(4) + math.log(3)) / 2), (1, math.log(3)), (2, 0.0)])
def test_value_by_hand_on_two_tokens(skip, expected):
    logits, batch = two_token_example()
    out = CEU(ignore_first_n_answer_tokens=skip)(lambda b: logits, batch)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_skips_the_first_answer_token_of_every_sample():
    model, batch = tiny_llama(0), qa_batch(1)  # five answer tokens a sample
    short = {**batch, "labels": batch["labels"].clone()}
    short["labels"][:, 3] = -100  # what ignore_first_n_answer_tokens=1 leaves
    full = CEU(ignore_first_n_answer_tokens=1)(as_policy(model), {"forget": batch}).loss
    assert full.item() == pytest.approx(CEU(0)(as_policy(model), {"forget": short}).loss.item(), rel=1e-6)


def test_gradient_is_p_at_the_answer_logit():
    # d CE(q, softmax z) / dz_y = p_y - q_y = p_y (q_y = 0), over 2 tokens.
    grads = label_logit_gradients(CEU(ignore_first_n_answer_tokens=0))
    assert grads.tolist() == pytest.approx([0.5 / 2, (1 / 3) / 2], rel=1e-5)
    assert (grads > 0).all()


def test_classification_counts_every_sample():
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0]])
    out = CEU()(lambda b: logits, {"forget": {"labels": torch.tensor([0])}})
    assert out.loss.item() == pytest.approx(math.log(4), rel=1e-6)


def test_one_step_lowers_the_forget_probability():
    before, after = one_unlearning_step(CEU())
    assert after < before - 0.05, (before, after)
