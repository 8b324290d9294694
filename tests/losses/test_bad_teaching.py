"""BadTeaching: KL terms by hand, the incompetent teacher (random, seeded, frozen), no gradient to teachers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mcu_lightning.core.forward import as_policy
from mcu_lightning.losses.bad_teaching import BadTeaching, random_copy

LN3 = math.log(3.0)


class Logits(nn.Module):
    """A model with fixed logits; ``reset_parameters`` makes them uniform (so its random copy is known)."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(logits))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.value.zero_()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.value.expand(inputs.size(0), -1)


def test_kl_terms_match_hand_computation() -> None:
    # T = 2: the student's logits [2 ln 3, 0] give [3/4, 1/4]; its random copy (zeros) gives [1/2, 1/2]
    student = Logits([2 * LN3, 0.0])
    loss = BadTeaching(alpha=0.5, gamma=2.0, kl_temperature=2.0)
    loss.setup_model(student)
    reference = lambda batch: torch.tensor([[0.0, 2 * LN3]]).expand(batch["inputs"].size(0), -1)  # noqa: E731
    batch = {
        "forget": {"inputs": torch.zeros(3, 1), "labels": torch.tensor([0, 1, 0])},
        "retain": {"inputs": torch.zeros(2, 1), "labels": torch.tensor([1, 1])},
    }
    out = loss(as_policy(student), batch, reference)
    forget_kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL([1/2,1/2] || [3/4,1/4])
    retain_kl = 0.25 * math.log(0.25 / 0.75) + 0.75 * math.log(0.75 / 0.25)  # KL([1/4,3/4] || [3/4,1/4])
    assert out.logs["forget_kl"].item() == pytest.approx(forget_kl)
    assert out.logs["retain_kl"].item() == pytest.approx(retain_kl)
    assert out.loss.item() == pytest.approx(2.0 * forget_kl + 0.5 * retain_kl)
    torch.testing.assert_close(out.per_sample, torch.full((3,), forget_kl))
    assert student.value.tolist() == pytest.approx([2 * LN3, 0.0])  # the model itself is untouched


def test_forget_only_batch_has_no_retain_term() -> None:
    student = Logits([LN3, 0.0])
    loss = BadTeaching()
    loss.setup_model(student)
    out = loss(as_policy(student), {"forget": {"inputs": torch.zeros(1, 1)}}, as_policy(student))
    assert "retain_loss" not in out.logs
    assert out.loss.item() == pytest.approx(0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4))


def test_incompetent_teacher_is_random_seeded_and_frozen() -> None:
    model = _mlp()
    rng = torch.get_rng_state()
    teacher = random_copy(model, seed=1)
    assert torch.equal(rng, torch.get_rng_state())  # the global RNG is untouched
    assert not torch.equal(teacher[0].weight, model[0].weight)
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(random_copy(model, seed=1)[2].weight, teacher[2].weight)
    assert not torch.equal(random_copy(model, seed=2)[2].weight, teacher[2].weight)


def test_teachers_receive_no_gradient() -> None:
    model, reference = _mlp(), _mlp()
    loss = BadTeaching()
    loss.setup_model(model)
    sub = {"inputs": torch.randn(4, 3), "labels": torch.tensor([0, 1, 2, 3])}
    loss(as_policy(model), {"forget": sub, "retain": sub}, as_policy(reference)).loss.backward()
    assert all(p.grad is None for p in loss.incompetent_teacher.parameters())
    assert all(p.grad is None for p in reference.parameters())
    assert model[0].weight.grad.abs().sum() > 0
    assert list(loss.parameters()) == [] and loss.state_dict() == {}  # not a submodule, not checkpointed


def test_random_copy_of_a_hugging_face_model() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p._is_hf_initialized = True  # as after from_pretrained
    teacher = random_copy(model, seed=0)
    changed = [
        name
        for (name, a), (_, b) in zip(model.named_parameters(), teacher.named_parameters(), strict=True)
        if not torch.equal(a, b)
    ]
    assert "model.layers.0.self_attn.q_proj.weight" in changed and "model.embed_tokens.weight" in changed
    assert teacher.lm_head.weight is teacher.model.embed_tokens.weight

    loss = BadTeaching()
    loss.setup_model(model)
    ids = torch.randint(0, 64, (2, 5))
    sub = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.where(ids > 30, ids, -100)}
    out = loss(as_policy(model), {"forget": sub}, as_policy(model))
    assert out.loss.item() > 0 and out.per_sample.shape == (2,)


def test_needs_setup_and_a_reference() -> None:
    loss = BadTeaching()
    batch = {"forget": {"inputs": torch.zeros(1, 1)}}
    with pytest.raises(ValueError, match="reference"):
        loss(as_policy(Logits([0.0, 0.0])), batch)
    with pytest.raises(RuntimeError, match="setup_model"):
        loss(as_policy(Logits([0.0, 0.0])), batch, as_policy(Logits([0.0, 0.0])))
    with pytest.raises(ValueError, match="reset_parameters"):
        random_copy(nn.ReLU())
