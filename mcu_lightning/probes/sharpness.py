"""Sharpness probe: curvature of a loss at the model, from Hessian-vector products.

Fan et al. (2025, arXiv 2502.05374) find that flatter unlearned minima resist relearning. At the model's weights
``w``, for the mean answer NLL ``L(w)`` of a fixed set of batches of ``split``:

- top eigenvalue ``lambda_max(H)``, ``H = d^2 L / dw^2``, by power iteration ``v <- Hv / ||Hv||`` (Rayleigh
  quotient ``v^T H v``); when the dominant eigenvalue ``lambda_d`` is negative, a second power iteration on
  ``H - lambda_d I`` finds ``lambda_max = mu + lambda_d``;
- trace by Hutchinson's estimator ``tr(H) = E[z^T H z]``, ``z`` Rademacher (Hutchinson, 1989).

``Hv`` is forward-over-reverse, ``torch.func.jvp(torch.func.grad(L), (w,), (v,))``, through
``torch.func.functional_call`` (attention through the math SDPA kernel, the only one with forward-mode AD); the
model's own tensors are never written. Fixed batches and a fixed seed make it deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import kv_cache_off, logits_of, model_inputs
from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.probes.base import Probe, ProbeContext, detached_batch

Params = dict[str, Tensor]


def _dot(a: Params, b: Params) -> Tensor:
    return sum((a[n] * b[n]).sum() for n in a)


def _scale(a: Params, c: Tensor | float) -> Params:
    return {n: v * c for n, v in a.items()}


def hvp_function(model: nn.Module, batches: list[Mapping], params: Params) -> Callable[[Params], Params]:
    """``v -> H v`` of the mean over ``batches`` of the batch answer NLL at ``params`` (the others stay the model's)."""

    def loss(p: Params) -> Tensor:
        total = 0.0
        for batch in batches:
            args, kwargs = model_inputs(batch)
            logits = logits_of(functional_call(model, p, args, kwargs))
            total = total + batch_nll(logits, batch["labels"])
        return total / len(batches)

    gradient = grad(loss)

    def hvp(v: Params) -> Params:
        return jvp(gradient, (params,), (v,))[1]

    return hvp


def top_eigenvalue(hvp: Callable[[Params], Params], like: Params, iterations: int, generator: torch.Generator) -> float:
    """The largest (algebraic) eigenvalue of the symmetric ``H`` behind ``hvp`` by (shifted) power iteration."""

    def power(shift: float) -> float:
        v = {n: torch.randn(t.shape, generator=generator).to(t) for n, t in like.items()}
        v = _scale(v, 1.0 / _dot(v, v).sqrt())
        value = 0.0
        for _ in range(iterations):
            hv = hvp(v)
            if shift:
                hv = {n: hv[n] - shift * v[n] for n in hv}
            value = float(_dot(v, hv))
            norm = _dot(hv, hv).sqrt()
            if float(norm) == 0.0:
                return 0.0
            v = _scale(hv, 1.0 / norm)
        return value

    dominant = power(0.0)
    return dominant if dominant >= 0 else power(dominant) + dominant


def hutchinson_trace(hvp: Callable[[Params], Params], like: Params, samples: int, generator: torch.Generator) -> float:
    """``mean_z z^T H z`` over ``samples`` Rademacher vectors ``z``."""
    total = 0.0
    for _ in range(samples):
        z = {n: (torch.randint(0, 2, t.shape, generator=generator) * 2 - 1).to(t) for n, t in like.items()}
        total += float(_dot(z, hvp(z)))
    return total / samples


class Sharpness(Probe):
    """``top_eigenvalue`` and ``trace`` of the Hessian of the mean answer NLL of ``split`` (see module docstring).

    Args:
        split: the evaluation split whose loss is differentiated (``retain`` or ``forget``).
        batches: how many of the split's evaluation batches (the first ones, a fixed set).
        iterations: power-iteration steps (each one Hessian-vector product).
        samples: Hutchinson probe vectors.
        include: a regex restricting the Hessian to matching parameter names (default: every floating parameter).
        seed: seeds the start vector and the probe vectors (stream ``probe/<name>``,
            :meth:`~mcu_lightning.probes.base.Probe.generator`).
    """

    def __init__(
        self,
        name: str = "sharpness",
        every: int = 1,
        split: str = "retain",
        batches: int = 1,
        iterations: int = 20,
        samples: int = 10,
        include: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(name, every)
        if batches < 1 or iterations < 1 or samples < 1:
            raise InputError(f"probe '{name}': batches, iterations and samples must be at least 1")
        self.split, self.batches, self.iterations, self.samples = split, batches, iterations, samples
        self.include, self.seed = include, seed

    def run(self, model: nn.Module, context: ProbeContext) -> dict[str, float]:
        batches = [detached_batch(b) for s, b in context.batches if s == self.split][: self.batches]
        if not batches:
            raise InputError(f"probe '{self.name}': the test run has no batches of split '{self.split}'")
        pattern = re.compile(self.include) if self.include is not None else None
        params = {
            n: p.detach().clone()
            for n, p in model.named_parameters()
            if p.is_floating_point() and (pattern is None or pattern.search(n))
        }
        if not params:
            raise InputError(f"probe '{self.name}': include={self.include!r} matches no floating parameter")
        was_training = model.training
        model.eval()
        try:
            # the math SDPA kernel: the fused CPU/CUDA attention kernels have no forward-mode AD formula
            # no_grad: the model's own (off-Hessian) parameters record no graph; torch.func ignores an outer no_grad
            with kv_cache_off(model), sdpa_kernel(SDPBackend.MATH), torch.no_grad():
                hvp = hvp_function(model, batches, params)
                generator = self.generator(self.seed)
                top = top_eigenvalue(hvp, params, self.iterations, generator)
                trace = hutchinson_trace(hvp, params, self.samples, generator)
        finally:
            model.train(was_training)
        return {f"{self.split}/top_eigenvalue": top, f"{self.split}/trace": trace}
