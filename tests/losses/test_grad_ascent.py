import math

import pytest
import torch
from tiny_lm import qa_batch, tiny_llama

from mcu_lightning.core.forward import as_policy, call_model
from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.losses import GradAscent


def test_value_is_negative_token_mean_nll():
    logits = torch.zeros(2, 5, 4)
    labels = torch.tensor([[-100, -100, -100, -100, 2], [-100, 1, 3, 0, -100]])
    out = GradAscent()(
        lambda b: logits, {"forget": {"input_ids": torch.zeros(2, 5, dtype=torch.long), "labels": labels}}
    )
    assert out.loss.item() == pytest.approx(-math.log(4.0), abs=1e-6)
    assert out.logs["forget_loss"].item() == pytest.approx(-math.log(4.0), abs=1e-6)
    assert out.logs["forget_nll"].item() == pytest.approx(math.log(4.0), abs=1e-6)
    assert "retain_loss" not in out.logs
    # The SuperLoss contract: loss = forget_weight * mean(per_sample).
    torch.testing.assert_close(out.per_sample, -torch.tensor([0.5, 1.5]) * math.log(4.0))
    assert out.loss.item() == pytest.approx(GradAscent.forget_weight * out.per_sample.mean().item())


def test_ignores_retain_data_and_needs_no_reference():
    loss = GradAscent()
    assert loss.needs_reference is False
    logits = torch.tensor([[0.0, math.log(3.0)]])
    forget = {"inputs": torch.zeros(1, 1), "labels": torch.tensor([1])}
    retain = {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])}
    out = loss(lambda b: logits, {"forget": forget, "retain": retain})
    assert out.loss.item() == pytest.approx(math.log(0.75), abs=1e-6)


def test_sgd_steps_raise_the_forget_nll():
    model = tiny_llama()
    forget = qa_batch(seed=1)
    before = batch_nll(call_model(model, forget), forget["labels"]).item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = GradAscent()
    for _ in range(5):
        optimizer.zero_grad()
        loss(as_policy(model), {"forget": forget}).loss.backward()
        optimizer.step()
    after = batch_nll(call_model(model, forget), forget["labels"]).item()
    assert after > before + 0.1
