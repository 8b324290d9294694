import math

import pytest
import torch
from jsonargparse import ArgumentParser
from scipy.optimize import minimize_scalar

from mcu_lightning.losses import NLL, GradAscent, GradDiff, LossOutput, SuperLoss, UnlearningLoss, superloss_sigma


def test_sigma_solves_the_confidence_problem():
    lam, tau = 10.0, 1.0
    losses = torch.tensor([-3.0, 0.0, 1.0, 2.5, 7.0, 40.0], dtype=torch.float64)
    sigma = superloss_sigma(losses, tau, lam)
    for l_i, s_i in zip(losses.tolist(), sigma.tolist(), strict=True):
        # Stationarity of (l - tau) sigma + lam (log sigma)^2 in sigma: (l - tau) + 2 lam log(sigma) / sigma = 0.
        assert (l_i - tau) + 2 * lam * math.log(s_i) / s_i == pytest.approx(0.0, abs=1e-9)
        # On sigma <= e (the principal branch, W >= -1) the objective has one minimum; below tau it is unbounded
        # as sigma -> infinity, and SuperLoss takes the local minimum.
        best = minimize_scalar(
            lambda u, l_i=l_i: (l_i - tau) * math.exp(u) + lam * u * u, bounds=(-10, 1), method="bounded"
        )
        assert s_i == pytest.approx(math.exp(best.x), rel=1e-4)
    assert sigma[2].item() == pytest.approx(1.0)  # l == tau: weight 1


def test_below_the_clamp_sigma_is_e():
    # (l - tau) / lam < -2/e is clamped: sigma = exp(-W(-1/e)) = exp(1).
    assert superloss_sigma(torch.tensor([-100.0]), 0.0, 10.0).item() == pytest.approx(math.e, rel=1e-5)


def test_easy_samples_weigh_more():
    sigma = superloss_sigma(torch.tensor([1.5, 2.0, 3.0, 10.0]), tau=2.0, lam=1.0)
    assert (sigma[:-1] > sigma[1:]).all()
    assert sigma[0] > 1 > sigma[-1]


class Fixed(UnlearningLoss):
    """per_sample given; loss = 2 * mean(per_sample) + 5 (a stand-in retain term)."""

    forget_weight = 2.0

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = torch.tensor(values, requires_grad=True)
        self.steps: list[int] = []

    def forward(self, policy, batch, reference=None):
        return LossOutput(
            loss=2.0 * self.values.mean() + 5.0, logs={"retain_loss": torch.tensor(5.0)}, per_sample=self.values
        )

    def on_train_step(self, step: int) -> None:
        self.steps.append(step)


def test_reweights_the_forget_term_and_keeps_the_rest():
    inner = Fixed([1.0, 3.0])
    wrapper = SuperLoss(inner, lam=1.0, tau=2.0)
    out = wrapper(lambda b: None, {})
    sigma = superloss_sigma(torch.tensor([1.0, 3.0]), 2.0, 1.0)
    per_sample = torch.tensor([-1.0, 1.0]) * sigma + torch.log(sigma) ** 2
    assert out.loss.item() == pytest.approx(2.0 * per_sample.mean().item() + 5.0, rel=1e-6)
    torch.testing.assert_close(out.per_sample.detach(), per_sample)
    assert out.logs["retain_loss"].item() == 5.0
    assert out.logs["superloss_tau"].item() == 2.0
    out.loss.backward()
    # sigma is a constant: d loss / d l_i = forget_weight * sigma_i / B.
    torch.testing.assert_close(inner.values.grad, 2.0 * sigma / 2)


def test_tau_is_a_moving_average_updated_in_training_only():
    inner = Fixed([1.0, 3.0])
    wrapper = SuperLoss(inner, momentum=0.9)
    wrapper(lambda b: None, {})
    assert wrapper.tau.item() == pytest.approx(2.0)  # initialised from the first batch mean
    inner.values = torch.tensor([5.0, 7.0], requires_grad=True)
    out = wrapper(lambda b: None, {})
    assert wrapper.tau.item() == pytest.approx(0.9 * 2.0 + 0.1 * 6.0)
    assert out.logs["superloss_tau"].item() == pytest.approx(2.4)
    wrapper.eval()
    wrapper(lambda b: None, {})
    assert wrapper.tau.item() == pytest.approx(2.4)
    assert "tau" in wrapper.state_dict() and "tau_initialised" in wrapper.state_dict()


def test_wrapping_a_real_loss_keeps_its_retain_term():
    batch = {
        "forget": {"inputs": torch.zeros(2, 1), "labels": torch.tensor([1, 0])},
        "retain": {"inputs": torch.zeros(2, 1), "labels": torch.tensor([0, 0])},
    }
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    inner = GradDiff(gamma=2.0, alpha=0.5)
    plain = inner(lambda b: logits, batch)
    out = SuperLoss(inner, lam=10.0)(lambda b: logits, batch)
    retain = plain.logs["retain_loss"].item()
    assert out.loss.item() - 2.0 * out.per_sample.mean().item() == pytest.approx(0.5 * retain, abs=1e-6)
    # Gradient ascent's per-sample term is -NLL: the sample with the larger NLL has the lower loss, so more weight.
    sigma = superloss_sigma(plain.per_sample, plain.per_sample.mean(), 10.0)
    assert sigma[1] > sigma[0]


def test_passes_through_without_per_sample_and_forwards_hooks():
    batch = {"retain": {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])}}
    out = SuperLoss(NLL())(lambda b: torch.zeros(1, 2), batch)
    assert out.loss.item() == pytest.approx(math.log(2.0))
    inner = Fixed([1.0])
    wrapper = SuperLoss(inner)
    wrapper.on_train_step(7)
    assert inner.steps == [7]
    assert wrapper.forget_weight == 2.0
    assert SuperLoss(GradDiff(retain_loss="kl")).needs_reference is True
    assert SuperLoss(GradAscent()).needs_reference is False


def test_builds_from_a_nested_class_path():
    parser = ArgumentParser()
    parser.add_argument("--loss", type=UnlearningLoss)
    config = parser.parse_object(
        {
            "loss": {
                "class_path": "mcu_lightning.losses.SuperLoss",
                "init_args": {
                    "loss": {"class_path": "mcu_lightning.losses.NPO", "init_args": {"beta": 0.2}},
                    "lam": 5.0,
                },
            }
        }
    )
    loss = parser.instantiate_classes(config).loss
    assert isinstance(loss, SuperLoss) and loss.lam == 5.0
    assert loss.loss.beta == 0.2 and loss.needs_reference is True


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="lam must be positive"):
        SuperLoss(GradAscent(), lam=0.0)
    with pytest.raises(ValueError, match="momentum"):
        SuperLoss(GradAscent(), momentum=1.0)
