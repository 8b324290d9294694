"""One driver for the whole lifecycle of an ``UnlearningLoss``, shared by every module.

``MCUModule`` calls :class:`LossLifecycle` from its Lightning hooks (``setup``, ``on_fit_start``,
``on_train_batch_start``, ``on_after_backward``); the driver has one method per loss hook, under the hook's own
name, and hands it what it receives. A module only says what it trains, as a :class:`TrainedNetwork`:

* :class:`TrainedModel`: a plain model (``FineTuneModule``, ``UnlearningModule``) whose own parameters move;
* :class:`TrainedCurve`: the control points of a curve (``CurveModule``), read through the curve's template.

So a hook added to ``UnlearningLoss`` is added here once and reaches every module; the meaning of each hook for a
plain model and for a curve is in its docstring in :mod:`mcu_lightning.losses.base`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.curves import TemplateCurve
from mcu_lightning.losses.base import NamedGradients, UnlearningLoss, model_gradients


class TrainedNetwork:
    """What a module trains, as the loss hooks see it."""

    def network(self) -> nn.Module:
        """The network the training policy runs (``attach`` registers its forward hooks there)."""
        raise NotImplementedError

    def setup_view(self) -> contextlib.AbstractContextManager[nn.Module]:
        """A context giving the model ``setup_model`` sees: the trained parameters, and only they, require grad."""
        raise NotImplementedError

    def named_gradients(self) -> NamedGradients:
        """The gradients of the trained tensors by parameter name, after a backward."""
        raise NotImplementedError


class TrainedModel(TrainedNetwork):
    """A plain model: ``setup_model`` sees it as it is, the gradients are its parameters' ``.grad``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def network(self) -> nn.Module:
        return self.model

    @contextlib.contextmanager
    def setup_view(self) -> Iterator[nn.Module]:
        yield self.model

    def named_gradients(self) -> NamedGradients:
        return model_gradients(self.model)


class TrainedCurve(TrainedNetwork):
    """The control points of ``curve`` (any :class:`~mcu_lightning.curves.TemplateCurve`), run through ``template``.

    ``setup_model`` sees the template at ``theta(0)`` (the first endpoint) with exactly the curve's parameters
    requiring grad; afterwards they are frozen again and hold what they held before, as do the float buffers (CPU
    copies are kept meanwhile: evaluation may have left another t there). The gradients are the control points' flat
    gradients split into one slice per parameter on the curve, viewed in the parameter's shape (views: in-place
    edits reach ``.grad``): the curve's ``trained_names`` and ``control_point_gradients``.
    """

    def __init__(self, curve: TemplateCurve, template: nn.Module) -> None:
        self.curve, self.template = curve, template

    def network(self) -> nn.Module:
        return self.template

    @contextlib.contextmanager
    def setup_view(self) -> Iterator[nn.Module]:
        names = self.curve.trained_names()
        params = dict(self.template.named_parameters())
        # what writing theta(0) replaces and is put back afterwards: the curve's tensors and the float buffers; a LoRA
        # curve's frozen base is not copied
        moved = [params[name] for name in names]
        moved += [buffer for buffer in self.template.buffers() if buffer.is_floating_point()]
        kept = [(tensor, tensor.detach().to("cpu", copy=True)) for tensor in moved]
        self.curve.write_to(self.template, 0.0)
        thawed = [param for param in moved[: len(names)] if not param.requires_grad]
        for param in thawed:
            param.requires_grad_(True)
        try:
            yield self.template
        finally:
            for param in thawed:
                param.requires_grad_(False)
                param.grad = None
            with torch.no_grad():
                for tensor, copy in kept:
                    tensor.copy_(copy)

    def named_gradients(self) -> NamedGradients:
        return self.curve.control_point_gradients()


class LossLifecycle:
    """Calls every hook of ``loss`` (see :class:`~mcu_lightning.losses.base.UnlearningLoss`) in its order."""

    def __init__(self, loss: UnlearningLoss) -> None:
        if not isinstance(loss, UnlearningLoss):
            raise TypeError(f"a module's loss must be an UnlearningLoss, got {type(loss).__name__}")
        self.loss = loss

    # 1. construction
    def trainable(self, names: Iterable[str]) -> list[str]:
        """The names ``loss.is_trainable`` keeps, or an error naming the loss when it keeps none of them."""
        names = list(names)
        kept = [name for name in names if self.loss.is_trainable(name)]
        if names and not kept:
            raise InputError(
                f"{type(self.loss).__name__} leaves no parameter to train (e.g. '{names[0]}' does not "
                "match its trainable pattern); widen the pattern"
            )
        return kept

    def is_trainable(self, name: str) -> bool:
        return self.loss.is_trainable(name)

    # 2. setup
    def bind(self, tokenizer: Any) -> None:
        if tokenizer is not None:
            self.loss.bind(tokenizer)

    def set_compat(self, mode: str) -> None:
        self.loss.set_compat(mode)

    # 3-4. the start of a fit
    def setup_model(self, trained: TrainedNetwork, forget_batches: Iterable[Mapping[str, Any]] | None) -> None:
        """``loss.setup_model`` on the model ``trained.setup_view()`` gives, with the forget split's batches."""
        with trained.setup_view() as model:
            self.loss.setup_model(model, forget_batches)

    def attach(self, trained: TrainedNetwork, reference: nn.Module | None) -> None:
        """``loss.attach`` to the network the training policy runs, with the frozen reference network."""
        self.loss.attach(trained.network(), reference)

    # 5-6. every step
    def on_train_step(self, step: int) -> None:
        self.loss.on_train_step(step)

    def on_after_backward(self, trained: TrainedNetwork) -> None:
        """``loss.on_after_backward`` with the trained tensors' gradients by parameter name."""
        self.loss.on_after_backward(trained.named_gradients())
