"""BatchNorm statistics at a point of the curve.

Running statistics do not interpolate the way weights do: theta(t) needs its own. Reset them, then average the
batch statistics of theta(t) over the training data with ``momentum=None`` (a cumulative mean) in train mode
(Garipov et al., 2018, Sec. 5.1; ``update_bn`` in their ``dnn-mode-connectivity`` code, also
``torch.optim.swa_utils.update_bn``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from mcu_lightning.core.forward import call_model, model_inputs


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds a BatchNorm layer that tracks running statistics."""
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())


def _batchnorms(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def _run(
    model: nn.Module, forward: Callable[[Mapping], Any], batches: Iterable[Mapping], max_batches: int | None
) -> None:
    """Run ``forward`` over the batches in train mode with cumulative-average BatchNorm; restore modes and momenta."""
    layers = [m for _, m in _batchnorms(model)]
    momenta = [m.momentum for m in layers]
    modes = {m: m.training for m in model.modules()}
    try:
        for m in layers:
            m.momentum = None  # cumulative moving average over the batches seen
        model.train()
        for batch in islice(batches, max_batches):
            forward(batch)
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        for m, mode in modes.items():
            m.train(mode)


def recompute_batchnorm(
    model: nn.Module,
    batches: Iterable[Mapping],
    forward: Callable[[Mapping], Any] | None = None,
    max_batches: int | None = None,
) -> nn.Module:
    """Reset every BatchNorm's running statistics of ``model`` and re-estimate them over ``batches``.

    ``forward(batch)`` runs the model (default: ``call_model(model, batch)``, the batch's model inputs); batches
    are flat mappings (a training batch's ``"forget"``/``"retain"`` sub-batches must be chosen by the caller).
    Use it on a working copy after ``curve.write_to(model, t)``. Returns ``model``.
    """
    if not has_batchnorm(model):
        return model
    for _, m in _batchnorms(model):
        m.reset_running_stats()
    _run(model, forward or (lambda batch: call_model(model, batch)), batches, max_batches)
    return model


def recompute_curve_batchnorm(
    curve: nn.Module, t: float, batches: Iterable[Mapping], max_batches: int | None = None
) -> dict[str, Tensor]:
    """BatchNorm statistics of ``theta(t)`` re-estimated through ``functional_call``, without a working copy.

    Returns the buffers at ``t`` with recomputed BatchNorm statistics; pass them to ``curve(t, batch, buffers=...)``.
    The template and the curve's stored buffers stay untouched.
    """
    template = curve.template
    buffers = curve.buffers_at(t)  # fresh tensors, updated in place by BatchNorm below
    for name, _ in _batchnorms(template):
        prefix = f"{name}." if name else ""
        buffers[prefix + "running_mean"].zero_()
        buffers[prefix + "running_var"].fill_(1.0)
        buffers[prefix + "num_batches_tracked"].zero_()
    with torch.no_grad():
        params = curve.params(t)

    def forward(batch: Mapping) -> Any:
        args, kwargs = model_inputs(batch)
        return functional_call(template, {**params, **buffers}, args, kwargs)

    _run(template, forward, batches, max_batches)
    return buffers
