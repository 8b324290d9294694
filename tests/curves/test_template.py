"""The curve interface: every curve kind implements TemplateCurve, and callers need nothing else."""

import inspect

import pytest
import torch
from torch import nn

from mcu_lightning.curves import Curve, Ensemble, LoraDeltaCurve, PolyChain, SlerpCurve, TemplateCurve
from mcu_lightning.curves.ensemble import CurvePoint


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.body(x))


def states() -> list[dict]:
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        out.append(Mlp().state_dict())
    return out


@pytest.mark.parametrize("kind", [Curve, SlerpCurve, LoraDeltaCurve])
def test_every_curve_kind_implements_the_interface(kind):
    assert issubclass(kind, TemplateCurve) and not inspect.isabstract(kind)


def test_the_interface_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        TemplateCurve(Mlp())


def test_declared_members_of_a_curve():
    ends = states()
    ends[1] = {**ends[1], "head.weight": ends[0]["head.weight"], "head.bias": ends[0]["head.bias"]}
    curve = Curve(Mlp(), ends, include="body")
    assert curve.trained_names() == ["body.weight", "body.bias"]
    assert curve.num_bends == 3 and not curve.fixed_bends and curve.has_free_points
    fixed = Curve(Mlp(), states(), PolyChain(3), init=states()[0], fixed_bends=True)
    assert fixed.fixed_bends and not fixed.has_free_points and len(fixed.control_points) == 0
    curve(0.3, {"inputs": torch.randn(5, 4)}).sum().backward()
    names = [name for name, _ in curve.control_point_gradients()]
    assert names == ["body.weight", "body.bias"]


def test_a_curve_point_needs_a_curve():
    with pytest.raises(TypeError, match="write_to"):
        CurvePoint(Mlp(), 0.5)
    curve = Curve(Mlp(), states())
    ensemble = Ensemble.from_curve(curve, 2, working=Mlp())
    assert len(ensemble) == 2
