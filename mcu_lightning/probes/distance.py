"""Distance probe: how far theta(t) is from the model before unlearning and from the curve's endpoints.

Siddiqui et al. (2025, arXiv 2505.22310) find that unlearned weights closer to the original model relearn more
easily. Over the floating parameters the model shares with each reference:

    l2_<ref> = ||theta - theta_ref||_2,    cos_<end> = <theta - theta_base, theta_end - theta_base>
                                                       / (||theta - theta_base|| ||theta_end - theta_base||)

with references ``base`` (the model before unlearning) and, on a curve, ``end0``/``end1`` (its endpoints, whose
task vectors ``theta_end - theta_base`` the cosine compares against). A cosine with a zero vector is NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mcu_lightning.probes.base import Probe, ProbeContext

BASE = "base"


def _common(theta: Mapping[str, Tensor], *others: Mapping[str, Tensor]) -> list[str]:
    return [n for n, v in theta.items() if v.is_floating_point() and all(n in o for o in others)]


def l2_distance(theta: Mapping[str, Tensor], other: Mapping[str, Tensor]) -> float:
    """``||theta - other||_2`` over the shared floating tensors (float64 accumulation); NaN when none are shared."""
    names = _common(theta, other)
    if not names:
        return math.nan
    total = sum(float((theta[n].double() - other[n].to(theta[n].device).double()).pow(2).sum()) for n in names)
    return math.sqrt(total)


def task_vector_cosine(theta: Mapping[str, Tensor], end: Mapping[str, Tensor], base: Mapping[str, Tensor]) -> float:
    """Cosine between ``theta - base`` and ``end - base`` over the tensors all three share (NaN for a zero vector)."""
    names = _common(theta, end, base)
    dot = norm_a = norm_b = 0.0
    for n in names:
        b = base[n].to(theta[n].device).double()
        a, e = theta[n].double() - b, end[n].to(theta[n].device).double() - b
        dot += float((a * e).sum())
        norm_a += float(a.pow(2).sum())
        norm_b += float(e.pow(2).sum())
    if not names or norm_a == 0.0 or norm_b == 0.0:
        return math.nan
    return dot / math.sqrt(norm_a * norm_b)


class Distance(Probe):
    """``l2_<ref>`` for every reference weight set and ``cos_<end>`` for every non-base one (see module docstring)."""

    needs_references = True

    def __init__(self, name: str = "distance", every: int = 1) -> None:
        super().__init__(name, every)

    def run(self, model: nn.Module, context: ProbeContext) -> dict[str, float]:
        if not context.references:  # e.g. a model trained from scratch (the oracle): nothing to measure against
            warnings.warn(
                f"probe '{self.name}' has no reference weights here and reports nothing; give the module the model "
                "before unlearning (`reference:` of a curve, a path as an unlearning module's starting model)",
                stacklevel=2,
            )
            return {}
        with torch.no_grad():
            theta = {name: param.detach() for name, param in model.named_parameters()}
            out = {f"l2_{ref}": l2_distance(theta, weights) for ref, weights in context.references.items()}
            base = context.references.get(BASE)
            if base is not None:
                for ref, weights in context.references.items():
                    if ref != BASE:
                        out[f"cos_{ref}"] = task_vector_cosine(theta, weights, base)
        return out
