"""The unlearning-objective seam: a loss sees a policy and a batch, never a module.

The policy seam (``Policy`` in ``core/forward.py``; docs/internals.md, "Loss hooks"): the same loss object trains an
endpoint (``policy = model``) and a curve (``policy = partial(curve, t)``), which is how the MCU authors fit curves:
with the unlearning method's own objective evaluated at theta(t). The hooks below are the loss's whole lifecycle;
one driver (:class:`mcu_lightning.modules.lifecycle.LossLifecycle`) calls them for every module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from mcu_lightning.core.compat import MCU, check_compat
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy

#: ``(parameter name, gradient)`` pairs, re-iterable (wrapped losses iterate them too): what ``on_after_backward``
#: may read and modify in place. For a plain model each trained parameter once (its ``.grad``); for a curve one pair
#: per parameter on the curve and control point (that control point's flat gradient's slice, viewed in its shape).
NamedGradients = Sequence[tuple[str, Tensor]]


def model_gradients(model: nn.Module) -> list[tuple[str, Tensor]]:
    """The ``NamedGradients`` of a plain model: ``(name, param.grad)`` for every parameter that has one."""
    return [(name, param.grad) for name, param in model.named_parameters() if param.grad is not None]


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

    The lifecycle, in the order the driver calls it (every hook is a no-op here; each docstring says what it means
    for a plain model, trained by ``FineTuneModule``/``UnlearningModule``, and for a curve, ``CurveModule``):

    1. :meth:`is_trainable` per parameter name, when the module is built;
    2. :meth:`bind` with the data module's tokenizer and :meth:`set_compat` with its ``compat`` mode, at ``setup``;
    3. :meth:`setup_model` once, at the start of ``fit``;
    4. :meth:`attach` once, right after it;
    5. :meth:`on_train_step` before every training forward;
    6. :meth:`on_after_backward` after every backward, before the optimizer step.
    """

    needs_reference: bool = False
    #: Whose definitions the objective follows where they differ (:mod:`mcu_lightning.core.compat`); set by
    #: :meth:`set_compat` from the data module's ``compat``.
    compat: str = MCU
    #: Whether the objective has a meaning for classifiers (logits ``[B, C]``, integer labels) as well as causal LMs.
    supports_classification: bool = True

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        raise NotImplementedError

    def is_trainable(self, name: str) -> bool:
        """Whether parameter ``name`` is trained (RMU's layer subset).

        Plain model: the module freezes every parameter for which this is false, before any optimizer or DDP
        wrapper sees them. Curve: only parameters for which this is true (and that ``include`` matches) are on the
        curve; the others stay at endpoint 0 and must agree between the endpoints, as with ``include``.
        """
        return True

    def bind(self, tokenizer: Any) -> None:
        """Receive the data module's tokenizer (IdkDPO tokenizes its "I don't know" answers), the same for a
        plain model and a curve. Not called when the data module has no tokenizer (classification data)."""

    def set_compat(self, mode: str | None) -> None:
        """Follow ``mode``'s definitions (``"mcu"`` or ``"open_unlearning"``; :mod:`mcu_lightning.core.compat`),
        the data module's ``compat``; only objectives whose definition differs between the two read it (the KL
        retain term, RMU). A loss that wraps another passes it on."""
        self.compat = check_compat(mode)

    def setup_model(self, model: nn.Module, forget_loader: Iterable[Mapping[str, Any]] | None = None) -> None:
        """Called once per fit, before the first step, with a model whose trained parameters require grad and the
        forget data (SalUn's saliency mask, BadTeaching's random teacher).

        Plain model: the model being trained, at its starting weights. Curve: the curve's working copy at
        ``theta(0)``, the first endpoint, with exactly the parameters on the curve requiring grad, so what is built
        there is what the same loss builds when it unlearns from the first endpoint (and the curve's objective at
        ``t = 0`` equals that loss), and a per-name result (SalUn's mask) covers exactly the curve's parameters.
        """

    def attach(self, model: nn.Module, reference: nn.Module | None = None) -> None:
        """Called once per fit after :meth:`setup_model` with the network the policy runs and the frozen reference
        network (None when there is none, or when it is the trained model with its LoRA adapters off).

        Plain model: the trained model. Curve: the template that ``curve(t, batch)`` runs at ``theta(t)``, so
        forward hooks registered on it (RMU's activations) fire on every curve forward.
        """

    def on_train_step(self, step: int) -> None:
        """Called before each training forward with the global step: the optimizer step of the endpoint, or of
        the control points on a curve, so alternating objectives (SCRUB) alternate over curve steps alike."""

    def on_after_backward(self, gradients: NamedGradients) -> None:
        """Called after each backward, before the optimizer step, with the gradients by parameter name (gradient
        masking, SalUn). Modify them in place.

        Plain model: ``(name, param.grad)`` of every trained parameter. Curve: for each control point and each
        parameter on the curve, the slice of the control point's flat gradient that belongs to that parameter,
        viewed in its shape (a name appears once per control point).
        """

    def require_reference(self, reference: Policy | None) -> Policy:
        if reference is None:
            raise InputError(
                f"{type(self).__name__} needs a reference model but none was given; "
                "the module loads one from the starting model when `loss.needs_reference` is true"
            )
        return reference


class WrapperLoss(UnlearningLoss):
    """A loss around another one (``self.loss``): every hook of the lifecycle is forwarded to it, so a wrapper
    cannot forget one. Subclasses (``SalUn``, ``SuperLoss``) extend the hooks they change and call ``super()``."""

    def __init__(self, loss: UnlearningLoss) -> None:
        super().__init__()
        if not isinstance(loss, UnlearningLoss):
            raise TypeError(f"{type(self).__name__} wraps an UnlearningLoss, got {type(loss).__name__}")
        self.loss = loss

    @property
    def needs_reference(self) -> bool:  # type: ignore[override]
        return self.loss.needs_reference

    @property
    def supports_classification(self) -> bool:  # type: ignore[override]
        return self.loss.supports_classification

    @property
    def forget_weight(self) -> float:
        return float(getattr(self.loss, "forget_weight", 1.0))

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        return self.loss(policy, batch, reference)

    def is_trainable(self, name: str) -> bool:
        return self.loss.is_trainable(name)

    def bind(self, tokenizer: Any) -> None:
        self.loss.bind(tokenizer)

    def set_compat(self, mode: str | None) -> None:
        super().set_compat(mode)
        self.loss.set_compat(mode)

    def setup_model(self, model: nn.Module, forget_loader: Iterable[Mapping[str, Any]] | None = None) -> None:
        self.loss.setup_model(model, forget_loader)

    def attach(self, model: nn.Module, reference: nn.Module | None = None) -> None:
        self.loss.attach(model, reference)

    def on_train_step(self, step: int) -> None:
        self.loss.on_train_step(step)

    def on_after_backward(self, gradients: NamedGradients) -> None:
        self.loss.on_after_backward(gradients)
