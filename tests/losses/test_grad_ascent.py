import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mcu_lightning.losses import GradAscent
from mcu_lightning.losses.per_sample import batch_nll
from mcu_lightning.models.forward import as_policy, call_model


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=32,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def qa_batch(seed: int) -> dict[str, torch.Tensor]:
    """Four fixed sequences of 8 tokens: a 3-token prompt, then a labelled 5-token answer."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 32, (4, 8), generator=generator)
    labels = input_ids.clone()
    labels[:, :3] = -100
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "index": torch.arange(4),
    }


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
