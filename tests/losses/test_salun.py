"""SalUn: the saliency mask on a linear model whose gradient ordering is known by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mcu_lightning.core.forward import as_policy
from mcu_lightning.losses.base import LossOutput, UnlearningLoss, model_gradients
from mcu_lightning.losses.salun import SalUn, saliency_masks


def linear() -> nn.Linear:
    """W = 0, b = ln [1, 2, 4]: p = softmax(b) = [1, 2, 4] / 7 for every input."""
    model = nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.log(torch.tensor([1.0, 2.0, 4.0])))
    return model


def forget_loader() -> list[dict]:
    # label 0: p - e_y = [-6, 2, 4] / 7; x = [5, 7, 11] -> |dW| = [[30, 42, 66], [10, 14, 22], [20, 28, 44]] / 7,
    # |db| = [6, 2, 4] / 7 (both batches add the same gradient: the ordering stays)
    sub = {"inputs": torch.tensor([[5.0, 7.0, 11.0]]), "labels": torch.tensor([0])}
    return [sub, {"forget": sub, "retain": sub}]


class Recorder(UnlearningLoss):
    """An inner loss that records its hook calls."""

    needs_reference = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def forward(self, policy, batch, reference=None) -> LossOutput:
        self.calls.append("forward")
        return LossOutput(loss=policy(batch["forget"]).sum(), logs={"forget_loss": torch.tensor(1.0)})

    def setup_model(self, model, forget_loader=None) -> None:
        self.calls.append("setup_model")

    def on_train_step(self, step: int) -> None:
        self.calls.append(f"step{step}")

    def on_after_backward(self, gradients) -> None:
        self.calls.append("after_backward")


@pytest.mark.parametrize(
    ("fraction", "weight_mask", "bias_mask"),
    [
        (0.5, [[1, 1, 1], [0, 0, 1], [0, 1, 1]], [0, 0, 0]),  # top 6 of 12: 66, 44, 42, 30, 28, 22
        (0.75, [[1, 1, 1], [1, 1, 1], [1, 1, 1]], [0, 0, 0]),  # top 9: all of W, none of b
        (0.25, [[0, 1, 1], [0, 0, 0], [0, 0, 1]], [0, 0, 0]),  # top 3: 66, 44, 42
    ],
)
def test_mask_keeps_the_globally_most_salient_entries(fraction, weight_mask, bias_mask) -> None:
    model = linear()
    loss = SalUn(Recorder(), fraction=fraction)
    loss.setup_model(model, forget_loader())
    assert loss.masks["weight"].tolist() == [[bool(v) for v in row] for row in weight_mask]
    assert loss.masks["bias"].tolist() == [bool(v) for v in bias_mask]
    kept = sum(int(mask.sum()) for mask in loss.masks.values())
    assert kept == int(12 * fraction)
    assert model.weight.grad is None  # computing saliency leaves .grad alone

    model.weight.grad = torch.full((3, 3), 2.0)
    model.bias.grad = torch.full((3,), 3.0)
    loss.on_after_backward(model_gradients(model))
    assert model.weight.grad.tolist() == [[2.0 * v for v in row] for row in weight_mask]
    assert model.bias.grad.tolist() == [3.0 * v for v in bias_mask]


def test_saliency_masks_counts_and_ties() -> None:
    masks = saliency_masks({"a.b": torch.tensor([3.0, 1.0]), "c": torch.tensor([[2.0, 0.5], [4.0, 0.0]])}, 0.5)
    assert masks["a.b"].tolist() == [True, False] and masks["c"].tolist() == [[True, False], [True, False]]
    assert sum(int(m.sum()) for m in saliency_masks({"x": torch.ones(7)}, 0.5).values()) == 3  # int(3.5)
    assert not saliency_masks({"x": torch.ones(3)}, 0.0)["x"].any()


def test_frozen_parameters_get_no_mask() -> None:
    model = linear()
    model.bias.requires_grad_(False)
    loss = SalUn(Recorder(), fraction=0.5)
    loss.setup_model(model, forget_loader())
    assert set(loss.masks) == {"weight"}
    # top int(9 * 0.5) = 4 of W alone: 66, 44, 42, 30
    assert loss.masks["weight"].tolist() == [[True, True, True], [False, False, False], [False, False, True]]


def test_delegates_to_the_inner_loss() -> None:
    inner = Recorder()
    loss = SalUn(inner)
    model = linear()
    loss.setup_model(model, forget_loader())
    loss.on_train_step(3)
    out = loss(as_policy(model), {"forget": forget_loader()[0]}, None)
    model.weight.grad = torch.ones(3, 3)
    loss.on_after_backward(model_gradients(model))
    assert inner.calls == ["setup_model", "step3", "forward", "after_backward"]
    assert out.loss.item() == pytest.approx(math.log(1.0) + math.log(2.0) + math.log(4.0))
    assert loss.needs_reference


def test_default_inner_loss_is_random_label() -> None:
    from mcu_lightning.losses.random_label import RandomLabel

    loss = SalUn()
    assert isinstance(loss.loss, RandomLabel) and loss.fraction == 0.5


def test_mask_survives_a_checkpoint_round_trip() -> None:
    loss = SalUn(Recorder(), fraction=0.5)
    loss.setup_model(linear(), forget_loader())
    restored = SalUn(Recorder(), fraction=0.5)
    restored.load_state_dict(loss.state_dict())
    other = linear()
    with torch.no_grad():
        other.bias.zero_()  # a different model: a recomputed mask would differ, a restored one is kept
    restored.setup_model(other, forget_loader())
    for name in loss.masks:
        assert torch.equal(restored.masks[name], loss.masks[name])


def test_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="fraction"):
        SalUn(Recorder(), fraction=1.5)
    loss = SalUn(Recorder())
    with pytest.raises(ValueError, match="forget_loader"):
        loss.setup_model(linear(), None)
    with pytest.raises(RuntimeError, match="setup_model"):
        loss.on_after_backward(model_gradients(linear()))
    loss.setup_model(linear(), forget_loader())
    other = nn.Sequential(linear())
    other[0].weight.grad = torch.ones(3, 3)
    with pytest.raises(KeyError, match=r"'0\.weight'"):
        loss.on_after_backward(model_gradients(other))
