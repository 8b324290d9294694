import pytest
import torch
from torch import nn
from torch.func import functional_call

from mcu_lightning.curves import Bezier, Curve
from mcu_lightning.curves.reparametrize import Reparametrization
from mcu_lightning.models import tiny_causal_lm


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight
        self.norm = nn.BatchNorm1d(3)

    def forward(self, ids):
        return self.head(self.norm(self.embed(ids)))


def test_matches_functional_call_and_fills_tied_aliases():
    model = Tied().train()
    names = ["embed.weight", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var"]
    values = [torch.randn(5, 3), torch.rand(3) + 0.5, torch.randn(3), torch.zeros(3), torch.ones(3)]
    ids = torch.tensor([0, 1, 2, 4])
    reference = functional_call(model, dict(zip(names, [v.clone() for v in values], strict=True)), (ids,))
    out = Reparametrization(model, names)(model, values, ids)
    assert torch.equal(out, reference)  # head used the swapped embedding too (tied), as functional_call does
    assert model.head.weight is model.embed.weight and isinstance(model.embed.weight, nn.Parameter)
    assert torch.count_nonzero(values[3]) > 0  # BatchNorm updated the swapped-in running mean, not its own


def test_originals_come_back_after_an_exception_and_errors_are_clear():
    model = Tied()
    original = model.embed.weight
    reparametrization = Reparametrization(model, ["embed.weight"])
    with pytest.raises(IndexError), reparametrization.applied([torch.zeros(5, 3)]):
        assert torch.count_nonzero(model.head.weight) == 0
        model(torch.tensor([7]))  # out of range: the forward fails inside the swap
    assert model.embed.weight is original and model.head.weight is original
    with pytest.raises(ValueError, match="1 names but 2 values"), reparametrization.applied([original, original]):
        pass
    with pytest.raises(ValueError, match=r"has no parameter or buffer 'norm\.missing'"):
        Reparametrization(model, ["norm.missing"])


def test_cheaper_than_functional_call_per_call():
    """Counted, not timed: functional_call resolves every name per call, a Reparametrization only swaps slots."""
    model = tiny_causal_lm(tokenizer=None, vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2)
    names = [name for name, _ in model.named_parameters()]
    reparametrization = Reparametrization(model, names)
    calls = {"n": 0}
    original = nn.Module.get_submodule

    def counting(self, target):
        calls["n"] += 1
        return original(self, target)

    nn.Module.get_submodule = counting
    try:
        with reparametrization.applied([p.detach() for p in model.parameters()]):
            pass
    finally:
        nn.Module.get_submodule = original
    assert calls["n"] == 0


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))


def test_write_to_follows_a_model_whose_tensors_were_replaced():
    ends = [_mlp(0).state_dict(), _mlp(1).state_dict()]
    curve = Curve(_mlp(2), ends, shape=Bezier(3))
    model = _mlp(3)
    curve.write_to(model, 0.0)
    assert torch.equal(model[0].weight, ends[0]["0.weight"])
    model[0].weight = nn.Parameter(torch.zeros(8, 4))  # reassigned: the cached plan must not write the old tensor
    model[2].to(torch.float64).to(torch.float32)  # new storage through .to()
    curve.write_to(model, 1.0)
    assert torch.equal(model[0].weight, ends[1]["0.weight"])
    assert torch.equal(model[2].weight, ends[1]["2.weight"])
    assert torch.equal(model[1].running_mean, ends[1]["1.running_mean"])


def test_write_to_non_contiguous_targets_and_shape_errors():
    ends = [_mlp(0).state_dict(), _mlp(1).state_dict()]
    curve = Curve(_mlp(2), ends, shape=Bezier(3))
    model = _mlp(3)
    model[0].weight = nn.Parameter(torch.zeros(4, 8).t())  # a transposed, non-contiguous parameter
    curve.write_to(model, 0.3)
    assert torch.allclose(model[0].weight, curve.params(0.3)["0.weight"])
    wrong = nn.Sequential(nn.Linear(4, 9), nn.BatchNorm1d(9), nn.Linear(9, 2))
    with pytest.raises(ValueError, match=r"write_to: '0.weight' has shape \(9, 4\) in the model"):
        curve.write_to(wrong, 0.3)
    with pytest.raises(ValueError, match=r"write_to: .*has no parameter or buffer '1\.weight'"):
        curve.write_to(nn.Sequential(nn.Linear(4, 8)), 0.3)
