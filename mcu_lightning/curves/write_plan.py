"""Where :meth:`Curve.write_to <mcu_lightning.curves.curve.Curve.write_to>` copies into a model, resolved once.

A curve's test writes theta(t) into one working copy at every t. The plan resolves the model's tensors for the
curve's names once (tied aliases included, :class:`~mcu_lightning.curves.reparametrize.Reparametrization`),
checks their shapes and keeps flat views of them, so a write is one ``_foreach_copy_`` with no Python per tensor.
It stays valid while neither the model's tensors nor the curve's move (``.to()``, reassignment).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.curves.reparametrize import Reparametrization


class WritePlan:
    """The targets of a write into ``model``: flat views of its tensors, in the order the sources come.

    Args:
        model: the model written into (of the curve's template architecture).
        names: the names written, the moving ones (theta(t)'s pieces, the moving buffers) first, then the fixed ones.
        moving_shapes: the shapes of the moving tensors (their sources come flat, one per name).
        fixed: the tensors written as they are, one per remaining name; one that already is the model's own tensor
            (a LoRA curve's frozen base) is skipped.
        anchor: a tensor of the curve whose moving (``.to()``) makes the plan stale.
    """

    def __init__(
        self, model: nn.Module, names: list[str], moving_shapes: list, fixed: list[Tensor], anchor: Tensor
    ) -> None:
        try:
            slots = Reparametrization(model, names)
        except ValueError as error:
            raise InputError(f"write_to: {error}; is the model of the template's architecture?") from error
        self.model, self.slots = model, slots
        self.pointers = [tensor.data_ptr() for tensor in slots.current()]
        self.anchor_pointer = anchor.data_ptr()
        self.targets: list[Tensor] = []  # flat views of the model's tensors (shaped ones when not contiguous)
        self.fixed: list[Tensor] = []  # after the moving pieces: the fixed tensors the model does not already share
        self.reshape: list[tuple[int, torch.Size]] = []  # sources to view in the target's shape
        moving = len(moving_shapes)
        shapes = [*moving_shapes, *(source.shape for source in fixed)]
        for i, (name, target, shape) in enumerate(zip(names, slots.current(), shapes, strict=True)):
            if target.shape != shape:
                raise InputError(
                    f"write_to: '{name}' has shape {tuple(target.shape)} in the model, {tuple(shape)} on the curve"
                )
            contiguous = target.is_contiguous()
            if i < moving:  # a piece of theta(t) or of the moving buffers: flat, viewed in shape if it must be
                if not contiguous:
                    self.reshape.append((len(self.targets), shape))
            else:
                source = fixed[i - moving]
                if source.data_ptr() == target.data_ptr():
                    continue  # already the model's own tensor (a LoRA curve's frozen base)
                self.fixed.append(source.reshape(-1) if contiguous else source)
            self.targets.append(target.detach().view(-1) if contiguous else target.detach())

    def is_current(self, model: nn.Module, anchor: Tensor) -> bool:
        """The plan is for ``model``, and neither its tensors nor the curve's have moved since it was made."""
        if model is not self.model or anchor.data_ptr() != self.anchor_pointer:
            return False
        return [tensor.data_ptr() for tensor in self.slots.current()] == self.pointers

    def copy(self, moving: Sequence[Tensor]) -> None:
        """Copy the moving tensors (flat, one per moving name) and the fixed ones into the model's tensors."""
        sources = [*moving, *self.fixed]
        for i, shape in self.reshape:
            sources[i] = sources[i].view(shape)
        if self.targets:
            torch._foreach_copy_(self.targets, sources)
