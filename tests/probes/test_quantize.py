"""Weight-only round-to-nearest: 4 bits moves the weights onto a 16-level grid, 16 bits changes next to nothing."""

from __future__ import annotations

import pytest
import torch

from mcu_lightning.probes import Quantize, fake_quantize, quantize_weights
from tests.probes.helpers import context_for, same_state, state_copy


def test_four_bits_put_each_row_on_at_most_sixteen_levels() -> None:
    weight = torch.randn(6, 32, generator=torch.Generator().manual_seed(0))
    quantized = fake_quantize(weight, bits=4)
    assert not torch.equal(quantized, weight)
    for row, original in zip(quantized, weight, strict=True):
        step = original.abs().max() / 7
        assert torch.unique(row).numel() <= 16
        assert (row - original).abs().max() <= step / 2 + 1e-6  # round-to-nearest: half a step at most
        assert torch.allclose(row / step, torch.round(row / step), atol=1e-4)  # integer multiples of the step


def test_sixteen_bits_change_weights_by_less_than_half_a_step() -> None:
    weight = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    error = (fake_quantize(weight, bits=16) - weight).abs()
    assert error.max() <= weight.abs().max() / 32767 / 2 + 1e-7


def test_groups_and_asymmetric_grids() -> None:
    weight = torch.randn(3, 32, generator=torch.Generator().manual_seed(2)) + 0.5
    grouped = fake_quantize(weight, bits=4, group_size=8)
    assert not torch.equal(grouped, fake_quantize(weight, bits=4))  # a scale per 8 inputs, not per row
    assert all(torch.unique(g).numel() <= 16 for g in grouped.reshape(-1, 8))
    asym = fake_quantize(weight, bits=4, symmetric=False)
    low, high = weight.amin(1, keepdim=True), weight.amax(1, keepdim=True)
    assert ((asym - weight).abs() <= (high - low) / 15 / 2 + 1e-6).all()
    with pytest.raises(ValueError, match="does not divide"):
        fake_quantize(weight, bits=4, group_size=5)


def test_dtype_is_kept() -> None:
    weight = torch.randn(4, 8).to(torch.bfloat16)
    assert fake_quantize(weight, bits=4).dtype == torch.bfloat16


def test_matches_torchao_affine_quantization() -> None:
    """Where torchao is importable, its asymmetric 4-bit affine maps (quant_primitives) give the same weights."""
    primitives = pytest.importorskip("torchao.quantization.quant_primitives")
    weight = torch.randn(8, 16, generator=torch.Generator().manual_seed(3))  # each row has both signs
    block = (1, 4)
    scale, zero = primitives.choose_qparams_affine(
        weight, primitives.MappingType.ASYMMETRIC, block, torch.uint8, quant_min=0, quant_max=15
    )
    q = primitives.quantize_affine(weight, block, scale, zero, torch.uint8, 0, 15)
    reference = primitives.dequantize_affine(q, block, scale, zero, torch.uint8, 0, 15, output_dtype=torch.float32)
    ours = fake_quantize(weight, bits=4, group_size=4, symmetric=False)
    both_signs = (weight.reshape(-1, 4).amin(1) < 0) & (weight.reshape(-1, 4).amax(1) > 0)  # torchao keeps 0 in range
    assert both_signs.sum() >= 16
    mask = both_signs.repeat_interleave(4).reshape(weight.shape)
    assert torch.allclose(ours[mask], reference[mask], atol=1e-6)


def test_quantize_weights_touches_linear_weights_only(tiny_lm) -> None:
    state = state_copy(tiny_lm)
    names = quantize_weights(tiny_lm, bits=4)
    assert names and all(name.endswith(".weight") for name in names)
    after = tiny_lm.state_dict()
    norms = [k for k in state if "norm" in k]
    assert norms and all(torch.equal(after[k], state[k]) for k in norms)
    assert any(not torch.equal(after[k], state[k]) for k in names)
    with pytest.raises(ValueError, match="no weight"):
        quantize_weights(tiny_lm, bits=4, include="no_such_parameter")


def test_probe_reports_recovery_and_leaves_the_model_alone(mlp, class_suite, digits) -> None:
    context = context_for(mlp, class_suite, digits, ["forget", "retain"])
    state = state_copy(mlp)
    four = Quantize(bits=4)(mlp, context)
    sixteen = Quantize(name="q16", bits=16)(mlp, context)
    assert same_state(mlp, state)
    assert abs(four["probe/quant4/retain/loss_recovery"]) > 1e-4  # 4 bits move the loss
    assert abs(sixteen["probe/q16/retain/loss_recovery"]) < 1e-5  # 16 bits do not matter
    assert four["probe/quant4/retain/loss"] == pytest.approx(
        context.before.aggregates["retain/loss"] + four["probe/quant4/retain/loss_recovery"]
    )
