"""Ensemble: the mean of its members' probabilities, one working copy for curve points, greedy generation."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from mcu_lightning.curves import (
    Bezier,
    Curve,
    CurvePoint,
    Ensemble,
    ModuleMember,
    StateMember,
    ensemble_ts,
    recompute_batchnorm,
)
from mcu_lightning.curves import ensemble as ensemble_module
from mcu_lightning.models import MLP, tiny_causal_lm


def _seeded_mlp(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_features=6, num_classes=4, hidden=8, depth=2).eval()


def _bn_curve() -> tuple[Curve, list[dict]]:
    """A trained-looking curve between two BatchNorm MLPs (the control point moved off the line)."""
    a, b = _seeded_mlp(0), _seeded_mlp(1)
    curve = Curve(copy.deepcopy(a), [a.state_dict(), b.state_dict()], shape=Bezier(3))
    with torch.no_grad():
        curve.control_points[0].add_(0.3 * torch.randn_like(curve.control_points[0]))
    generator = torch.Generator().manual_seed(0)
    batches = [{"inputs": torch.randn(16, 6, generator=generator), "labels": torch.zeros(16).long()} for _ in range(2)]
    return curve, batches


class Table(nn.Module):
    """A toy LM: next-token log-probabilities depend only on the current token (rows of ``table``)."""

    def __init__(self, probs: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", probs.log())

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.table[input_ids]


def test_one_point_equals_that_point_with_batchnorm_recomputed():
    curve, batches = _bn_curve()
    ensemble = Ensemble.from_curve(curve, [0.3], working=copy.deepcopy(curve.template), bn_batches=batches)
    point = curve.write_to(copy.deepcopy(curve.template), 0.3)
    recompute_batchnorm(point, batches)
    x = torch.randn(5, 6)
    expected = torch.log_softmax(point.eval()(x), dim=-1)
    torch.testing.assert_close(ensemble(x), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ensemble(x), expected, rtol=1e-6, atol=1e-6)  # cached statistics: the same


def test_forward_is_the_log_of_the_mean_probability():
    members = [_seeded_mlp(seed) for seed in range(3)]
    x = torch.randn(7, 6)
    mean = torch.stack([torch.softmax(m(x), dim=-1) for m in members]).mean(0)
    out = Ensemble.from_models(members)(x)
    torch.testing.assert_close(out.exp(), mean, rtol=1e-6, atol=1e-7)
    assert out.dtype == torch.float32 and not out.requires_grad


def test_curve_points_share_one_working_copy_and_cache_batchnorm(monkeypatch):
    curve, batches = _bn_curve()
    calls = []
    original = ensemble_module.recompute_batchnorm
    monkeypatch.setattr(ensemble_module, "recompute_batchnorm", lambda m, b: calls.append(1) or original(m, b))
    working = copy.deepcopy(curve.template)
    ensemble = Ensemble.from_curve(curve, 3, working=working, bn_batches=batches)
    assert [m.t for m in ensemble.members] == [0.0, 0.5, 1.0] and list(ensemble.parameters()) == []
    x = torch.randn(4, 6)
    first = ensemble(x)
    torch.testing.assert_close(ensemble(x), first)
    assert len(calls) == 3  # once per member, then cached
    expected = []
    for t in (0.0, 0.5, 1.0):
        model = recompute_batchnorm(curve.write_to(copy.deepcopy(curve.template), t), batches).eval()
        expected.append(torch.softmax(model(x), dim=-1))
    torch.testing.assert_close(first.exp(), torch.stack(expected).mean(0), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        curve.control_points[0].mul_(0.5)  # the curve moved: statistics are recomputed
    ensemble(x)
    assert len(calls) == 6


def test_state_members_are_written_into_the_working_copy():
    a, b = _seeded_mlp(0), _seeded_mlp(1)
    x = torch.randn(3, 6)
    by_state = Ensemble([StateMember(a.state_dict()), b.state_dict()], working=_seeded_mlp(5))
    by_module = Ensemble([ModuleMember(a), b])
    torch.testing.assert_close(by_state(x), by_module(x))


def test_generate_of_one_member_matches_greedy_hugging_face_generate():
    model = tiny_causal_lm(tokenizer=None, vocab_size=32, hidden_size=32, intermediate_size=64, seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 32, (3, 6), generator=generator)
    mask = torch.ones_like(ids)
    ids[0, :2], mask[0, :2], ids[1, :1], mask[1, :1] = 0, 0, 0, 0  # left padding: positions follow the mask
    kwargs = {"input_ids": ids, "attention_mask": mask, "do_sample": False, "max_new_tokens": 6, "pad_token_id": 0}
    plain = model.generate(**kwargs)
    eos = int(plain[2, 7])  # row 2's second new token ends it; the others keep going or end too
    model.generation_config.eos_token_id = eos
    expected = model.generate(**kwargs)
    assert torch.equal(Ensemble.from_models([model]).generate(**kwargs), expected)
    assert expected.size(1) == 8 or (expected[2, 8:] == 0).all()  # row 2 is padded after its end


def test_generate_takes_each_token_from_the_averaged_distribution():
    """Member A prefers token 0, member B token 2; their average prefers token 1, which neither would choose."""
    first, second = torch.full((4, 4), 0.01), torch.full((4, 4), 0.01)
    first[3] = torch.tensor([0.59, 0.39, 0.01, 0.01])
    second[3] = torch.tensor([0.01, 0.39, 0.59, 0.01])
    first[:3, 3] = second[:3, 3] = 0.97  # then the end token
    ensemble = Ensemble([Table(first), Table(second)])
    out = ensemble.generate(torch.tensor([[3]]), max_new_tokens=3, eos_token_id=3, pad_token_id=0)
    assert out.tolist() == [[3, 1, 3]]
    assert Ensemble([Table(first)]).generate(torch.tensor([[3]]), max_new_tokens=1).tolist() == [[3, 0]]


def test_refusals():
    curve, batches = _bn_curve()
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])
    with pytest.raises(ValueError, match="bn_batches"):
        Ensemble.from_curve(curve, 3)
    with pytest.raises(ValueError, match="working copy"):
        Ensemble([CurvePoint(curve, 0.5, batches)])
    with pytest.raises(ValueError, match="outside"):
        ensemble_ts([0.5, 1.5])
    with pytest.raises(ValueError, match="ts=\\[t\\]"):
        ensemble_ts(1)
    with pytest.raises(ValueError, match="greedy"):
        Ensemble([_seeded_mlp(0)]).generate(torch.zeros(1, 2).long(), do_sample=True)
    with pytest.raises(ValueError, match="lacks"):
        Ensemble([{"net.1.weight": torch.zeros(8, 6)}], working=_seeded_mlp(0))(torch.zeros(1, 6))
    assert ensemble_ts(5) == [0.0, 0.25, 0.5, 0.75, 1.0] and math.isclose(ensemble_ts([0.2])[0], 0.2)
