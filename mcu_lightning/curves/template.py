"""The frozen template a curve runs at theta(t): swapped tensors, its train/eval mode, activation checkpointing.

A curve owns its endpoints and control points, not a model: it runs one frozen ``template`` module with the
tensors at ``t`` in its slots (what ``torch.func.functional_call`` does, the names resolved once by a
:class:`~mcu_lightning.curves.reparametrize.Reparametrization`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import logits_of, model_inputs
from mcu_lightning.curves.reparametrize import Reparametrization, checkpoint_context


def functional_forward(
    template: nn.Module, reparametrization: Reparametrization, values: Sequence[Tensor], batch: Mapping[str, Any]
) -> Tensor:
    """Logits of ``template`` with ``values`` in the slots of ``reparametrization.names``, checkpoint-safe."""
    args, kwargs = model_inputs(batch)
    return logits_of(reparametrization(template, values, *args, **kwargs))


def uses_activation_checkpointing(template: nn.Module) -> bool:
    """Whether a Hugging Face template has activation (gradient) checkpointing switched on."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in template.modules())


def enable_gradient_checkpointing(template: nn.Module) -> None:
    """Activation checkpointing on a Hugging Face template that a curve runs through (non-reentrant, exact)."""
    enable = getattr(template, "gradient_checkpointing_enable", None)
    if enable is None:
        raise InputError(
            f"{type(template).__name__} has no gradient_checkpointing_enable; activation checkpointing for curves "
            "is supported on Hugging Face models"
        )
    enable(gradient_checkpointing_kwargs={"use_reentrant": False, "context_fn": checkpoint_context})


class TemplateCurve(nn.Module):
    """What every curve shares: a frozen template it runs at theta(t) (tensors swapped in) but does not own.

    The template is not a submodule (``parameters()`` and ``state_dict()`` are the curve's own), its train/eval
    mode follows the curve's, and when it checkpoints activations the recomputation happens at theta(t).
    Subclasses run the template through :func:`functional_forward` with a :class:`Reparametrization` of it.
    """

    def __init__(self, template: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_template", template)  # hidden: not a submodule, never trained or saved
        if uses_activation_checkpointing(template):  # make recomputation see theta(t), not the template's weights
            enable_gradient_checkpointing(template)

    @property
    def template(self) -> nn.Module:
        return self._template

    @property
    def has_free_points(self) -> bool:
        """Whether the curve has control points to fit (False: a training-free path, tested without fit)."""
        return any(p.requires_grad for p in self.parameters())

    def train(self, mode: bool = True) -> TemplateCurve:
        """Set the mode of the curve and of the template (dropout, BatchNorm behave as in the template)."""
        super().train(mode)
        self._template.train(mode)
        return self
