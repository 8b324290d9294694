import pytest
import torch

from mcu_lightning.curves.shapes import Bezier, Linear, PolyChain


@pytest.mark.parametrize("shape", [Linear(), Bezier(3), Bezier(5), PolyChain(3), PolyChain(4)])
@pytest.mark.parametrize("t", [0.0, 0.1, 0.25, 0.5, 0.77, 1.0])
def test_coefficients_sum_to_one(shape, t):
    c = shape.coefficients(t)
    assert c.dtype == torch.float32 and c.shape == (shape.num_bends,)
    assert c.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert (c >= 0).all()


def test_bezier_hand_values():
    assert torch.equal(Bezier(3).coefficients(0.25), torch.tensor([0.5625, 0.375, 0.0625]))
    # cubic at t=0.5: binom(3,k)/8
    assert torch.allclose(Bezier(4).coefficients(0.5), torch.tensor([0.125, 0.375, 0.375, 0.125]))
    assert torch.equal(Bezier(3).coefficients(0.0), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(Bezier(3).coefficients(torch.tensor(1.0)), torch.tensor([0.0, 0.0, 1.0]))


def test_polychain_hand_values():
    chain = PolyChain(3)  # bends at 0, 0.5, 1
    assert torch.allclose(chain.coefficients(0.25), torch.tensor([0.5, 0.5, 0.0]))
    assert torch.allclose(chain.coefficients(0.5), torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(chain.coefficients(0.8), torch.tensor([0.0, 0.4, 0.6]))
    assert torch.equal(chain.coefficients(1.0), torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(PolyChain(4).coefficients(0.5), torch.tensor([0.0, 0.5, 0.5, 0.0]))
    assert torch.allclose(Linear().coefficients(0.3), torch.tensor([0.7, 0.3]))
    assert PolyChain(4).bend_ts() == [0.0, 1 / 3, 2 / 3, 1.0]


def test_validation():
    with pytest.raises(ValueError, match="num_bends >= 2"):
        Bezier(1)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        Bezier(3).coefficients(1.5)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        PolyChain(3).coefficients(float("nan"))


@pytest.mark.parametrize("shape", [Bezier(3), Bezier(5), PolyChain(4), Linear()], ids=repr)
def test_weights_are_the_coefficients_as_floats(shape):
    for t in (0.0, 0.13, 0.5, 0.97, 1.0):
        weights = shape.weights(t)
        assert torch.allclose(torch.tensor(weights, dtype=torch.float32), shape.coefficients(t))
        assert sum(weights) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="t must lie in"):
        shape.weights(1.5)
