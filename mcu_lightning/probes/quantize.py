"""Quantization probe: does weight-only quantization bring the forgotten knowledge back?

Zhang et al. (ICLR 2025, arXiv 2410.16454) find that 4-bit quantization of an unlearned LLM restores much of what
unlearning removed: unlearning moves the weights by less than a 4-bit grid step, so rounding lands many of them back
on the original model's grid points. The probe quantizes a copy's weights by round-to-nearest (RTN), dequantizes
them into the model's dtype (so the suite runs unchanged), evaluates and reports each metric and its
``<metric>_recovery = after - before``.

RTN is written with torch ops (torchao's ``quant_primitives`` compute the same affine maps; the tests compare them
when torchao is importable). Per output row, or per group of ``group_size`` consecutive input weights:

    symmetric:  s = max|w| / (2^(b-1) - 1),  q = clamp(round(w / s), -2^(b-1), 2^(b-1) - 1),  w' = s q
    asymmetric: s = (max w - min w) / (2^b - 1),  z = round(-min w / s),  q = clamp(round(w / s) + z, 0, 2^b - 1),
                w' = s (q - z)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.metrics.suite import MetricSuite
from mcu_lightning.probes.base import Probe, ProbeContext, metric_filter, suite_metric_direction, with_recovery


def fake_quantize(weight: Tensor, bits: int, group_size: int | None = None, symmetric: bool = True) -> Tensor:
    """``weight`` rounded to a ``bits``-bit grid per output row (or per ``group_size`` inputs) and dequantized, in
    ``weight``'s dtype (the formulas of the module docstring, computed in float32)."""
    if bits < 2:
        raise InputError(f"bits={bits}: round-to-nearest needs at least 2 bits")
    rows = weight.reshape(weight.shape[0], -1).float()
    if group_size is not None:
        if rows.shape[1] % group_size:
            raise InputError(
                f"group_size={group_size} does not divide the {rows.shape[1]} inputs of a weight of shape "
                f"{tuple(weight.shape)}; use a divisor or group_size=None (per output channel)"
            )
        rows = rows.reshape(-1, group_size)
    tiny = torch.finfo(torch.float32).tiny
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = (rows.abs().amax(dim=1, keepdim=True) / qmax).clamp_min(tiny)
        out = torch.clamp(torch.round(rows / scale), -qmax - 1, qmax) * scale
    else:
        qmax = 2**bits - 1
        low, high = rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)
        scale = ((high - low) / qmax).clamp_min(tiny)
        zero = torch.round(-low / scale)
        out = (torch.clamp(torch.round(rows / scale) + zero, 0, qmax) - zero) * scale
    return out.reshape(weight.shape).to(weight.dtype)


def quantize_weights(
    model: nn.Module, bits: int, group_size: int | None = None, symmetric: bool = True, include: str | None = None
) -> list[str]:
    """Replace, in place, the weights of ``model``'s ``nn.Linear`` layers (or the parameters whose name matches
    ``include``) by :func:`fake_quantize`; returns their names (a tied tensor is quantized once)."""
    pattern = re.compile(include) if include is not None else None
    linear = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    names, seen = [], set()
    for name, param in model.named_parameters(remove_duplicate=False):
        chosen = pattern.search(name) is not None if pattern is not None else name in linear
        if not chosen or id(param) in seen or not param.is_floating_point() or param.dim() < 2:
            continue
        seen.add(id(param))
        with torch.no_grad():
            param.copy_(fake_quantize(param, bits, group_size, symmetric))
        names.append(name)
    if not names:
        raise InputError(
            f"quantization found no weight to quantize (include={include!r}); the model has no nn.Linear layers "
            "or the pattern matches no 2-D parameter"
        )
    return names


class Quantize(Probe):
    """Evaluate a weight-only RTN-quantized copy of the model.

    Args:
        bits: grid width (4 and 8 are the usual ones; 16 changes next to nothing).
        group_size: inputs per scale (e.g. 32, 128); ``None``: one scale per output channel.
        symmetric: absmax grid around 0, or an asymmetric min/max grid with a zero point.
        include: a regex over parameter names to quantize instead of every ``nn.Linear`` weight.
        splits: the splits evaluated (default: all of the test run's).
        metrics: the suite metrics reported (default: every per-split metric, forget quality and model utility).
    """

    def __init__(
        self,
        name: str = "quant4",
        every: int = 1,
        bits: int = 4,
        group_size: int | None = None,
        symmetric: bool = True,
        include: str | None = None,
        splits: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
    ) -> None:
        super().__init__(name, every)
        if bits < 2:
            raise InputError(f"probe '{name}': bits={bits}; round-to-nearest needs at least 2 bits")
        if group_size is not None and group_size < 1:
            raise InputError(f"probe '{name}': group_size={group_size}; give a positive group or None")
        self.bits, self.group_size, self.symmetric, self.include = bits, group_size, symmetric, include
        self.splits = list(splits) if splits is not None else None
        self.keep = metric_filter(self.splits, metrics)

    def run(self, model: nn.Module, context: ProbeContext) -> dict[str, float]:
        quantized = copy.deepcopy(model)
        try:
            quantize_weights(quantized, self.bits, self.group_size, self.symmetric, self.include)
            after = context.evaluate(quantized.eval(), self.splits)
        finally:
            del quantized
        return with_recovery(after, context.before.aggregates, self.keep)

    def higher_is_better(self, metric: str, suite: MetricSuite) -> str | bool | None:
        return suite_metric_direction(metric, suite)
