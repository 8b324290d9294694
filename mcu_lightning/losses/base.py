"""The unlearning-objective seam: a loss sees a policy and a batch, never a module.

DESIGN.md, "The three seams": the same loss object trains an endpoint (``policy = model``) and a curve
(``policy = partial(curve, t)``), which is how the MCU authors fit curves: with the unlearning method's
own objective evaluated at theta(t).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from mcu_lightning.models.forward import Policy


@dataclass
class LossOutput:
    """A scalar loss to minimise plus its named parts (detached scalars logged to TensorBoard).

    ``per_sample`` optionally carries the per-sample forget terms, for curriculum wrappers (SuperLoss).
    """

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)
    per_sample: Tensor | None = None


class UnlearningLoss(nn.Module):
    """Base class of every objective: ``forward(policy, batch, reference=None) -> LossOutput``.

    ``batch`` is ``{"forget": sub_batch, "retain": sub_batch}`` (``retain`` may be absent); a plain
    training batch for fine-tuning is passed as ``{"train": batch}``. ``reference`` is a frozen policy
    of the starting model, given only when ``needs_reference`` is true.

    Hooks the modules call (no-ops here): ``is_trainable`` per parameter name when the module is built
    (parameter subsets, RMU), ``setup_model`` once before training (a saliency mask, a random teacher),
    ``attach`` once before training with the networks the policies run (losses that read activations,
    RMU), ``on_train_step`` before every training forward (alternating objectives such as SCRUB),
    ``on_after_backward`` after every backward (gradient masking).
    """

    needs_reference: bool = False

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        raise NotImplementedError

    def setup_model(self, model: nn.Module, forget_loader: Iterable[Mapping[str, Any]] | None = None) -> None:
        """Called once by the module before training, with the model being trained and the forget data."""

    def is_trainable(self, name: str) -> bool:
        """Whether the module may update parameter ``name``; the others are frozen before training starts."""
        return True

    def attach(self, model: nn.Module, reference: nn.Module | None = None) -> None:
        """Called once before training with the network the policy runs (the trained model, or a curve's
        template) and the frozen reference network (None when there is none, or when it is the trained model
        with its LoRA adapters off)."""

    def on_train_step(self, step: int) -> None:
        """Called before each training forward with the global step."""

    def on_after_backward(self, model: nn.Module) -> None:
        """Called after each backward, before the optimizer step (gradients are populated)."""

    def require_reference(self, reference: Policy | None) -> Policy:
        if reference is None:
            raise ValueError(
                f"{type(self).__name__} needs a reference model but none was given; "
                "the module loads one from the starting model when `loss.needs_reference` is true"
            )
        return reference
