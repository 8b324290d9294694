"""SLERP per tensor (mergekit's definition): exact endpoints, unit norm between orthogonal unit tensors, the line
for near-parallel tensors, and no trainable parameters."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mcu_lightning.curves import Curve, Linear, Slerp, SlerpCurve
from mcu_lightning.curves.slerp import slerp_angles, slerp_weights


class Pair(nn.Module):
    """Two parameters, so one SLERP curve holds an orthogonal pair and a parallel pair at once."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(4))
        self.b = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return x * self.a.sum() + self.b.sum()


def _reference(t: float, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    """SLERP of one tensor pair written out in float64 from the formula (the module docstring's)."""
    v0, v1 = v0.double(), v1.double()
    dot = float((v0 / v0.norm()) @ (v1 / v1.norm()))
    if abs(dot) > 0.9995:
        return (1 - t) * v0 + t * v1
    theta = math.acos(dot)
    return (math.sin(theta - t * theta) * v0 + math.sin(t * theta) * v1) / math.sin(theta)


@pytest.fixture
def endpoints() -> list[dict[str, torch.Tensor]]:
    # a: orthogonal unit vectors; b: parallel (b1 = 3 * b0)
    start = {"a": torch.tensor([1.0, 0.0, 0.0, 0.0]), "b": torch.tensor([1.0, -2.0, 0.5])}
    end = {"a": torch.tensor([0.0, 1.0, 0.0, 0.0]), "b": 3.0 * start["b"]}
    return [start, end]


def test_endpoints_exact_and_no_trainable_parameters() -> None:
    torch.manual_seed(0)
    states = [{name: torch.randn_like(p) for name, p in Pair().named_parameters()} for _ in range(2)]
    curve = SlerpCurve(Pair(), states)
    assert list(curve.parameters()) == [] and not curve.has_free_points
    for t, state in ((0.0, states[0]), (1.0, states[1])):
        params = curve.params(t)
        assert all(torch.equal(params[name], state[name]) for name in state)
    x = torch.randn(5)
    with torch.no_grad():
        model = curve.write_to(Pair(), 1.0)
    assert torch.equal(model.a, states[1]["a"]) and torch.equal(model(x), curve(1.0, {"inputs": x}))


def test_orthogonal_unit_midpoint_has_unit_norm_unlike_the_line(endpoints) -> None:
    curve = SlerpCurve(Pair(), endpoints)
    line = Curve(Pair(), endpoints, shape=Linear())
    mid = curve.params(0.5)["a"]
    torch.testing.assert_close(mid, torch.tensor([1.0, 1.0, 0.0, 0.0]) / math.sqrt(2))
    assert mid.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert line.params(0.5)["a"].norm().item() == pytest.approx(math.sqrt(0.5), abs=1e-6)
    for t in (0.1, 0.3, 0.7):  # the whole arc stays on the unit circle
        a = curve.params(t)["a"]
        assert a.norm().item() == pytest.approx(1.0, abs=1e-6)
        torch.testing.assert_close(a.double(), _reference(t, endpoints[0]["a"], endpoints[1]["a"]))


def test_parallel_tensor_falls_back_to_the_line(endpoints) -> None:
    curve = SlerpCurve(Pair(), endpoints)
    line = Curve(Pair(), endpoints, shape=Linear())
    theta_0, linear = slerp_angles([endpoints[0]["a"], endpoints[0]["b"]], [endpoints[1]["a"], endpoints[1]["b"]])
    assert linear.tolist() == [False, True]
    assert theta_0[0].item() == pytest.approx(math.pi / 2)
    for t in (0.25, 0.5, 0.9):
        torch.testing.assert_close(curve.params(t)["b"], line.params(t)["b"])


def test_near_parallel_within_threshold_is_the_line_and_just_outside_is_not() -> None:
    v0 = torch.tensor([1.0, 0.0])
    inside = torch.tensor([1.0, 0.02])  # cos = 0.9998 > 0.9995
    outside = torch.tensor([1.0, 0.05])  # cos = 0.99875 < 0.9995
    _, linear = slerp_angles([v0, v0], [inside, outside])
    assert linear.tolist() == [True, False]
    s0, s1 = slerp_weights(0.3, *slerp_angles([v0], [outside]))
    expected = _reference(0.3, v0, outside)
    torch.testing.assert_close((s0[0] * v0 + s1[0] * outside).double(), expected)


def test_slerp_shape_refuses_a_plain_curve(endpoints) -> None:
    with pytest.raises(ValueError, match="a SlerpCurve for Slerp"):
        Curve(Pair(), endpoints, shape=Slerp())
    with pytest.raises(ValueError, match="no weights shared by every tensor"):
        Slerp().weights(0.5)
