import math

import pytest
import torch
from tiny_lm import qa_batch, tiny_llama
from torch import nn

from mcu_lightning.core.forward import as_policy, call_model
from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.losses import GradAscent, GradDiff

LN_3_4 = math.log(0.75)


def cls_batch() -> dict:
    """Logits (0, ln3) for every sample: p = (1/4, 3/4). Forget label 1 (NLL -ln 3/4), retain label 0 (NLL ln 4)."""
    forget = {"inputs": torch.zeros(2, 1), "labels": torch.tensor([1, 1])}
    retain = {"inputs": torch.ones(2, 1), "labels": torch.tensor([0, 0])}
    return {"forget": forget, "retain": retain}


def fixed_policy(batch):
    return torch.tensor([[0.0, math.log(3.0)]]).expand(batch["labels"].size(0), 2)


@pytest.mark.parametrize(("gamma", "alpha"), [(1.0, 1.0), (2.0, 0.5), (0.0, 3.0)])
def test_gamma_and_alpha_weight_the_terms(gamma, alpha):
    out = GradDiff(gamma=gamma, alpha=alpha)(fixed_policy, cls_batch())
    expected = gamma * LN_3_4 + alpha * math.log(4.0)
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.logs["forget_loss"].item() == pytest.approx(LN_3_4, abs=1e-6)
    assert out.logs["retain_loss"].item() == pytest.approx(math.log(4.0), abs=1e-6)
    assert out.loss.item() == pytest.approx(gamma * out.per_sample.mean().item() + alpha * math.log(4.0), abs=1e-6)


def test_without_retain_data_it_is_weighted_gradient_ascent():
    batch = {"forget": cls_batch()["forget"]}
    assert GradDiff(gamma=2.0)(fixed_policy, batch).loss.item() == pytest.approx(2 * LN_3_4, abs=1e-6)


def test_kl_retain_needs_a_reference_and_is_zero_at_the_reference():
    assert GradDiff().needs_reference is False
    loss = GradDiff(retain_loss="kl")
    assert loss.needs_reference is True
    with pytest.raises(ValueError, match="GradDiff needs a reference model"):
        loss(fixed_policy, cls_batch())
    out = loss(fixed_policy, cls_batch(), reference=fixed_policy)
    assert out.logs["retain_loss"].item() == pytest.approx(0.0, abs=1e-7)
    assert out.loss.item() == pytest.approx(LN_3_4, abs=1e-6)


def test_reference_receives_no_gradient():
    torch.manual_seed(0)
    policy, reference = nn.Linear(3, 2), nn.Linear(3, 2)
    batch = {
        "forget": {"inputs": torch.randn(4, 3), "labels": torch.tensor([0, 1, 0, 1])},
        "retain": {"inputs": torch.randn(4, 3), "labels": torch.tensor([1, 1, 0, 0])},
    }
    GradDiff(retain_loss="kl")(as_policy(policy), batch, as_policy(reference)).loss.backward()
    assert policy.weight.grad is not None
    assert all(p.grad is None for p in reference.parameters())


def unlearn(loss, steps: int = 8) -> tuple[float, float, float, float]:
    model = tiny_llama()
    batch = {"forget": qa_batch(1), "retain": qa_batch(2)}

    def nll(split: str) -> float:
        with torch.no_grad():
            return batch_nll(call_model(model, batch[split]), batch[split]["labels"]).item()

    forget_before, retain_before = nll("forget"), nll("retain")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        loss(as_policy(model), batch).loss.backward()
        optimizer.step()
    return forget_before, nll("forget"), retain_before, nll("retain")


def test_sgd_steps_forget_while_the_retain_nll_stays_bounded():
    forget_before, forget_after, retain_before, retain_after = unlearn(GradDiff(alpha=1.0))
    assert forget_after > forget_before + 0.1
    assert retain_after < retain_before + 0.05
    _, _, _, retain_after_ascent = unlearn(GradAscent())
    assert retain_after < retain_after_ascent
