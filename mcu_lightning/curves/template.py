"""The curve interface: what every curve kind declares, and the frozen template it runs at theta(t).

A curve owns its endpoints and control points, not a model: it runs one frozen ``template`` module with the
tensors at ``t`` in its slots (what ``torch.func.functional_call`` does, the names resolved once by a
:class:`~mcu_lightning.curves.reparametrize.Reparametrization`). :class:`TemplateCurve` is the abstract base every
curve kind implements (the flat :class:`~mcu_lightning.curves.curve.Curve` and its training-free paths, SLERP,
LoRA-delta curves): callers use these members and nothing else.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import logits_of, model_inputs
from mcu_lightning.curves.reparametrize import Reparametrization, checkpoint_context
from mcu_lightning.curves.shapes import CurveShape

#: ``(parameter name, gradient)`` pairs of a curve's control points, as the loss hooks read them by name.
NamedGradients = Sequence[tuple[str, Tensor]]


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


class TemplateCurve(nn.Module, abc.ABC):
    """The curve interface: a path ``theta(t)``, ``t`` in [0, 1], between two frozen endpoints, run through a frozen
    template it does not own.

    Every curve kind implements the abstract members (``forward``, :meth:`params`, :meth:`write_to`,
    :meth:`path_length`, :meth:`trained_names`, :meth:`control_point_gradients`) and sets ``shape`` (its
    :class:`~mcu_lightning.curves.shapes.CurveShape`) and ``control_points`` (its trainable bends, empty for a
    training-free path). The template is not a submodule (``parameters()`` and ``state_dict()`` are the curve's
    own), its train/eval mode follows the curve's, and when it checkpoints activations the recomputation happens at
    theta(t). Subclasses run the template through :func:`functional_forward` with a :class:`Reparametrization`.
    """

    shape: CurveShape
    #: The trainable control points (``parameters()`` of the curve); empty for a training-free path.
    control_points: nn.ParameterList
    #: Whether the interior bends are frozen at ``init`` (a training-free path through them).
    fixed_bends: bool = False

    def __init__(self, template: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_template", template)  # hidden: not a submodule, never trained or saved
        if uses_activation_checkpointing(template):  # make recomputation see theta(t), not the template's weights
            enable_gradient_checkpointing(template)

    @property
    def template(self) -> nn.Module:
        return self._template

    @property
    def num_bends(self) -> int:
        """Bends of the curve's shape, endpoints included."""
        return self.shape.num_bends

    @property
    def has_free_points(self) -> bool:
        """Whether the curve has control points to fit (False: a training-free path, tested without fit)."""
        return any(p.requires_grad for p in self.parameters())

    def train(self, mode: bool = True) -> TemplateCurve:
        """Set the mode of the curve and of the template (dropout, BatchNorm behave as in the template)."""
        super().train(mode)
        self._template.train(mode)
        return self

    @abc.abstractmethod
    def forward(self, t: float | Tensor, batch: Mapping[str, Any]) -> Tensor:
        """Logits of the template at ``theta(t)`` on the batch's model inputs (``policy = partial(curve, t)``)."""

    @abc.abstractmethod
    def params(self, t: float | Tensor) -> dict[str, Tensor]:
        """Every parameter of the template at ``theta(t)``, by ``named_parameters()`` name."""

    @abc.abstractmethod
    def write_to(self, model: nn.Module, t: float | Tensor) -> nn.Module:
        """Copy ``theta(t)`` into ``model`` (of the template's architecture); returns it."""

    @abc.abstractmethod
    def path_length(self, ts: Sequence[float]) -> float:
        """``sum_i ||theta(t_{i+1}) - theta(t_i)||_2`` over the tensors the curve moves (a discretised arc length)."""

    @abc.abstractmethod
    def trained_names(self) -> list[str]:
        """``named_parameters()`` names of the template's tensors the curve moves; every other parameter of the
        template stays as the template holds it (a LoRA curve's frozen base)."""

    @abc.abstractmethod
    def control_point_gradients(self) -> NamedGradients:
        """``(name, gradient)`` per parameter on the curve for every control point that has a gradient: views of the
        control points' ``.grad`` (in-place edits, such as a per-name gradient mask, reach what the optimizer
        reads)."""
