"""SalUn (Fan et al., 2024, "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency").

Weight saliency is the magnitude of the forget-loss gradient at the starting model,

    s = | sum_{forget batches} grad_theta NLL(forget batch) |,

and the saliency mask ``m_S = 1[s >= threshold]`` keeps the top ``fraction`` of all entries, ranked globally over
every trainable parameter (``fraction = 0.5`` is the authors' hard threshold at the median). Training then runs an
unlearning loss (the authors': random labels on forget, ``RandomLabel``) with every gradient multiplied by the mask,
so only salient weights move: ``theta <- theta - lr * (m_S * grad)``.

The mask is computed once in ``setup_model`` and applied in ``on_after_backward``. It lives in the loss's
``state_dict`` (as extra state keyed by parameter name), so a resumed run keeps the mask of the starting model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import call_model
from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.losses.base import NamedGradients, UnlearningLoss, WrapperLoss


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {key: value.to(device) if isinstance(value, Tensor) else value for key, value in batch.items()}


def forget_gradient(model: nn.Module, forget_loader: Iterable[Mapping[str, Any]]) -> dict[str, Tensor]:
    """``sum_batches grad NLL(forget batch)`` per trainable parameter name (``.grad`` fields are left untouched).

    The loader yields forget sub-batches, or unlearning batches ``{"forget": sub_batch, ...}``.
    """
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    if not named:
        raise InputError(f"SalUn found no trainable parameter in {type(model).__name__}; unfreeze what should unlearn")
    device = named[0][1].device
    total = {name: torch.zeros_like(param, dtype=torch.float32) for name, param in named}
    seen, was_training = 0, model.training
    model.eval()  # saliency of the model itself, without dropout noise
    with torch.enable_grad():
        for batch in forget_loader:
            sub = batch["forget"] if isinstance(batch.get("forget"), Mapping) else batch
            sub = _to_device(sub, device)
            loss = batch_nll(call_model(model, sub), sub["labels"])
            grads = torch.autograd.grad(loss, [param for _, param in named], allow_unused=True)
            for (name, _), grad in zip(named, grads, strict=True):
                if grad is not None:
                    total[name] += grad.float()
            seen += 1
    model.train(was_training)
    if seen == 0:
        raise InputError("SalUn needs the forget data to compute weight saliency but the forget loader is empty")
    return total


def saliency_masks(saliency: Mapping[str, Tensor], fraction: float) -> dict[str, Tensor]:
    """Boolean masks keeping the ``int(N * fraction)`` entries of largest saliency among all ``N`` entries.

    The ranking is global over all tensors, as in the authors' ``generate_mask.py``; ties are broken by position.
    """
    names = list(saliency)
    flat = torch.cat([saliency[name].reshape(-1).float() for name in names])
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    k = int(flat.numel() * fraction)
    if k > 0:
        keep[torch.topk(flat, k, sorted=False).indices] = True
    masks, start = {}, 0
    for name in names:
        size = saliency[name].numel()
        masks[name] = keep[start : start + size].view_as(saliency[name])
        start += size
    return masks


class SalUn(WrapperLoss):
    """An unlearning loss (default ``RandomLabel()``) whose gradients are masked to the salient weights.

    Args:
        loss: the objective to train with; its hooks and ``needs_reference`` are forwarded.
        fraction: fraction of all trainable entries kept by the saliency mask (0.5 = median threshold).
    """

    def __init__(self, loss: UnlearningLoss | None = None, fraction: float = 0.5) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise InputError(f"SalUn fraction must lie in [0, 1], got {fraction}")
        if loss is None:
            from mcu_lightning.losses.random_label import RandomLabel

            loss = RandomLabel()
        super().__init__(loss)
        self.fraction = fraction
        self.masks: dict[str, Tensor] = {}
        self._restored = False

    def setup_model(self, model: nn.Module, forget_loader: Iterable[Mapping[str, Any]] | None = None) -> None:
        """Compute the saliency mask at ``model`` over its parameters that require grad (kept as is when restored from
        a checkpoint): the starting model of an endpoint, the first endpoint for a curve (``UnlearningLoss``)."""
        super().setup_model(model, forget_loader)
        if self._restored and self.masks:
            return
        if forget_loader is None:
            raise InputError(
                "SalUn computes its saliency mask from the forget data; pass `forget_loader` to setup_model"
            )
        gradient = forget_gradient(model, forget_loader)
        self.masks = saliency_masks({name: grad.abs() for name, grad in gradient.items()}, self.fraction)

    def on_after_backward(self, gradients: NamedGradients) -> None:
        """``grad <- mask * grad`` for every named gradient: a parameter's ``.grad``, or on a curve the slice of each
        control point's gradient that belongs to the parameter (so only salient entries of the curve move)."""
        super().on_after_backward(gradients)
        if not self.masks:
            raise RuntimeError(
                "SalUn has no saliency mask; the module must call `loss.setup_model(model, forget_loader)`"
            )
        for name, grad in gradients:
            mask = self.masks.get(name)
            if mask is None:
                raise KeyError(
                    f"SalUn has no saliency mask for parameter '{name}'; the mask was computed on parameters "
                    f"{sorted(self.masks)[:5]}..., so setup_model must get the same model that is trained"
                )
            if mask.device != grad.device:
                mask = self.masks[name] = mask.to(grad.device)
            grad.mul_(mask)

    def get_extra_state(self) -> dict[str, Tensor]:
        return dict(self.masks)

    def set_extra_state(self, state: Any) -> None:
        self.masks = dict(state or {})
        self._restored = bool(self.masks)
