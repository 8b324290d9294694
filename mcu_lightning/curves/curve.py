"""A curve in weight space between two frozen endpoints, for any ``nn.Module`` (no layer rewriting).

``theta(t) = sum_k c_k(t) P_k`` (Garipov et al., 2018, Eq. 1-2) with ``P_0``, ``P_{n-1}`` the endpoints (frozen
buffers in their own dtype) and ``P_1 .. P_{n-2}`` the trainable fp32 control points. The curve's parameters live
as ONE flat tensor per bend, so a step costs a few large ``mul``/``add`` kernels and a ``split``, not a Python loop of
arithmetic over every tensor; the template then runs at ``theta(t)`` through ``torch.func.functional_call``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mcu_lightning.curves.shapes import Bezier, CurveShape, as_t
from mcu_lightning.models.forward import logits_of, model_inputs
from mcu_lightning.models.io import load_state_dict

Source = str | os.PathLike | Mapping[str, Tensor]

#: The (template, state) of the curve forward in progress, for activation-checkpoint recomputation.
_FORWARD_STATE: contextvars.ContextVar[tuple[nn.Module, dict[str, Tensor]] | None] = contextvars.ContextVar(
    "curve_forward_state", default=None
)


def checkpoint_context() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    """``context_fn`` for ``torch.utils.checkpoint``: recompute a layer at the theta(t) of its forward.

    ``functional_call`` puts theta(t) into the template only while the forward runs; a checkpointed layer is
    recomputed during backward, after that swap is undone, and would silently use the template's own weights.
    Entering the same reparametrisation for the recomputation makes the control-point gradients exact.
    """
    current = _FORWARD_STATE.get()
    if current is None:
        return contextlib.nullcontext(), contextlib.nullcontext()
    from torch.nn.utils.stateless import _reparametrize_module

    template, state = current
    return contextlib.nullcontext(), _reparametrize_module(template, state)


def functional_forward(template: nn.Module, state: Mapping[str, Tensor], batch: Mapping[str, Any]) -> Tensor:
    """Logits of ``template`` with ``state`` swapped in (``functional_call``), checkpoint-recomputation safe."""
    args, kwargs = model_inputs(batch)
    token = _FORWARD_STATE.set((template, dict(state)))
    try:
        return logits_of(functional_call(template, state, args, kwargs))
    finally:
        _FORWARD_STATE.reset(token)


def uses_activation_checkpointing(template: nn.Module) -> bool:
    """Whether a Hugging Face template has activation (gradient) checkpointing switched on."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in template.modules())


def enable_gradient_checkpointing(template: nn.Module) -> None:
    """Activation checkpointing on a Hugging Face template that a curve runs through (non-reentrant, exact)."""
    enable = getattr(template, "gradient_checkpointing_enable", None)
    if enable is None:
        raise ValueError(
            f"{type(template).__name__} has no gradient_checkpointing_enable; activation checkpointing for curves "
            "is supported on Hugging Face models"
        )
    enable(gradient_checkpointing_kwargs={"use_reentrant": False, "context_fn": checkpoint_context})


class _TensorStore(nn.Module):
    """Named tensors kept as non-persistent buffers, so they follow ``.to(device)`` but stay out of checkpoints."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.names = list(tensors)
        for i, tensor in enumerate(tensors.values()):
            self.register_buffer(f"t{i}", tensor, persistent=False)

    def items(self) -> list[tuple[str, Tensor]]:
        return [(name, getattr(self, f"t{i}")) for i, name in enumerate(self.names)]


def _label(source: Source, index: int) -> str:
    return f"#{index}" if isinstance(source, Mapping) else f"'{os.fspath(source)}'"


def _resolve(source: Source) -> dict[str, Tensor]:
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, (str, Path, os.PathLike)):
        return load_state_dict(source)
    raise TypeError(f"an endpoint is a path or a state dict, got {type(source).__name__}")


def _tie_groups(template: nn.Module) -> dict[str, list[str]]:
    """For each parameter name ``named_parameters()`` lists, every name that shares its tensor (itself first)."""
    by_tensor: dict[int, list[str]] = {}
    for name, param in template.named_parameters(remove_duplicate=False):
        by_tensor.setdefault(id(param), []).append(name)
    return {names[0]: names for names in by_tensor.values()}


def _retie(state: dict[str, Tensor], groups: Mapping[str, list[str]]) -> dict[str, Tensor]:
    """Fill a tied name a format dropped (``save_pretrained`` drops ``lm_head.weight``) from its tie partner."""
    for canonical, names in groups.items():
        if canonical not in state:
            present = [name for name in names if name in state]
            if present:
                state[canonical] = state[present[0]]
    return state


def _check_finite(state: Mapping[str, Tensor], names: Sequence[str], label: str) -> None:
    for name in names:
        tensor = state[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"endpoint {label} has non-finite values (NaN or inf) in '{name}'")


def _common_dtype(dtypes: Sequence[torch.dtype], floor: torch.dtype | None = None) -> torch.dtype:
    """The one dtype shared by all ``dtypes``, or their promotion (at least ``floor``) when they differ."""
    unique = set(dtypes)
    if len(unique) == 1 and floor is None:
        return unique.pop()
    out = floor or torch.float32
    for dtype in unique:
        out = torch.promote_types(out, dtype)
    return out


class TemplateCurve(nn.Module):
    """What every curve shares: a frozen template it runs through ``functional_call`` but does not own.

    The template is not a submodule (``parameters()`` and ``state_dict()`` are the curve's own), its train/eval
    mode follows the curve's, and when it checkpoints activations the recomputation happens at theta(t).
    """

    def __init__(self, template: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_template", template)  # hidden: not a submodule, never trained or saved
        if uses_activation_checkpointing(template):  # make recomputation see theta(t), not the template's weights
            enable_gradient_checkpointing(template)

    @property
    def template(self) -> nn.Module:
        return self._template

    def train(self, mode: bool = True) -> TemplateCurve:
        """Set the mode of the curve and of the template (dropout, BatchNorm behave as in the template)."""
        super().train(mode)
        self._template.train(mode)
        return self


class Curve(TemplateCurve):
    """Frozen endpoints + trainable control points over a frozen ``template`` module.

    Args:
        template: a module of the endpoints' architecture. It is never trained nor written (only read by
            ``functional_call``), and it is not a submodule: ``curve.parameters()`` are the control points alone.
        endpoints: the two endpoints, each a path (see :func:`mcu_lightning.models.io.load_state_dict`) or a state dict.
        shape: the curve shape (``Bezier(3)``: one control point, the MCU setting).
        init: ``"linear"`` puts control point ``k`` on the straight line at ``t_k = k / (n - 1)``; a path or state dict
            puts every control point at that model (the MCU authors' choice: the model before unlearning).
        include: a regex (``re.search`` on parameter names); only matching parameters are on the curve, the others
            stay at endpoint 0 and must agree between the endpoints (e.g. ``"lora_"`` for a LoRA-space curve).

    Float buffers (BatchNorm statistics) are interpolated linearly, ``(1 - t) b_0 + t b_1``; integer buffers are
    taken from endpoint 0. At ``t = 0`` and ``t = 1`` every tensor equals the endpoint's exactly.
    """

    def __init__(
        self,
        template: nn.Module,
        endpoints: Sequence[Source],
        shape: CurveShape | None = None,
        init: Source = "linear",
        include: str | None = None,
    ) -> None:
        super().__init__(template)
        if len(endpoints) != 2:
            raise ValueError(f"a curve needs exactly two endpoints, got {len(endpoints)}")
        self.shape = shape if shape is not None else Bezier(3)
        self.include = include
        labels = [_label(source, i) for i, source in enumerate(endpoints)]
        groups = _tie_groups(template)
        states = [_retie(_resolve(source), groups) for source in endpoints]
        named = dict(template.named_parameters())
        self._check_names(states, labels, named, "parameter")
        on_curve = [name for name in named if include is None or re.search(include, name)]
        if not on_curve:
            raise ValueError(f"include={include!r} matches no parameter of the template (e.g. '{next(iter(named))}')")
        off_curve = [name for name in named if name not in set(on_curve)]
        for state, label in zip(states, labels, strict=True):
            _check_finite(state, on_curve, label)
        self._check_off_curve(states, labels, off_curve)
        if all(torch.equal(states[0][name], states[1][name]) for name in on_curve):
            raise ValueError(f"a curve needs two different endpoints; {labels[0]} and {labels[1]} are identical")

        # the curve's parameters, flat: one buffer per endpoint (own dtype), one fp32 Parameter per control point
        self.names = on_curve
        self._shapes = [named[name].shape for name in on_curve]
        self._sizes = [named[name].numel() for name in on_curve]
        self._dtypes = [named[name].dtype for name in on_curve]
        flat_dtype = _common_dtype([states[i][name].dtype for i in (0, 1) for name in on_curve])
        for key, state in zip(("_start", "_end"), states, strict=True):
            flat = torch.cat([state[name].detach().reshape(-1).to(flat_dtype) for name in on_curve])
            self.register_buffer(key, flat, persistent=False)
        self.control_points = nn.ParameterList(
            nn.Parameter(bend) for bend in self._initial_bends(init, groups, named, on_curve)
        )
        self._fixed_params = _TensorStore({name: states[0][name].detach().to(named[name].dtype) for name in off_curve})
        self._init_buffers(template, states, labels)

    # -- construction helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _check_names(
        states: list[dict[str, Tensor]], labels: list[str], named: Mapping[str, Tensor], kind: str
    ) -> None:
        """Every template tensor in both endpoints, with the template's shape."""
        for name, reference in named.items():
            present = [name in state for state in states]
            if not all(present):
                if not any(present):
                    raise ValueError(
                        f"endpoints {labels[0]} and {labels[1]} both lack {kind} '{name}' of the template; "
                        "are they models of the template's architecture?"
                    )
                have, lack = (0, 1) if present[0] else (1, 0)
                raise ValueError(f"endpoint {labels[lack]} lacks {kind} '{name}' that endpoint {labels[have]} has")
            shapes = [tuple(state[name].shape) for state in states]
            if shapes[0] != shapes[1]:
                raise ValueError(
                    f"{kind} '{name}' has shape {shapes[0]} in endpoint {labels[0]} but {shapes[1]} in {labels[1]}"
                )
            if shapes[0] != tuple(reference.shape):
                raise ValueError(
                    f"{kind} '{name}' has shape {shapes[0]} in the endpoints "
                    f"but {tuple(reference.shape)} in the template"
                )

    def _check_off_curve(self, states: list[dict[str, Tensor]], labels: list[str], off_curve: list[str]) -> None:
        for name in off_curve:
            if not torch.equal(states[0][name], states[1][name]):
                raise ValueError(
                    f"parameter '{name}' is off the curve (include={self.include!r}) but differs between endpoints "
                    f"{labels[0]} and {labels[1]}; parameters off the curve must agree (widen include)"
                )

    def _initial_bends(
        self, init: Source, groups: Mapping[str, list[str]], named: Mapping[str, Tensor], on_curve: list[str]
    ) -> list[Tensor]:
        """The control points' starting values, fp32 flat: on the straight line, or all at the ``init`` model."""
        inner = self.shape.bend_ts()[1:-1]
        if isinstance(init, str) and init == "linear":
            start, end = self._start.float(), self._end.float()
            return [torch.lerp(start, end, t_k) for t_k in inner]
        state = _retie(_resolve(init), groups)
        label = f"init {_label(init, 0)}" if not isinstance(init, Mapping) else "init state dict"
        for name in on_curve:
            if name not in state:
                raise ValueError(f"{label} lacks parameter '{name}' that the endpoints have")
            if tuple(state[name].shape) != tuple(named[name].shape):
                raise ValueError(
                    f"parameter '{name}' has shape {tuple(state[name].shape)} in {label} "
                    f"but {tuple(named[name].shape)} in the endpoints"
                )
        _check_finite(state, on_curve, label)
        flat = torch.cat([state[name].detach().reshape(-1).float() for name in on_curve])
        return [flat.clone() for _ in inner]

    def _init_buffers(self, template: nn.Module, states: list[dict[str, Tensor]], labels: list[str]) -> None:
        """Float buffers found in both endpoints are interpolated; integer ones and the template's own are fixed."""
        moving: dict[str, Tensor] = {}
        fixed: dict[str, Tensor] = {}
        for name, buffer in template.named_buffers():
            present = [name in state for state in states]
            if not any(present):  # non-persistent buffers (rotary inv_freq): the template's own
                fixed[name] = buffer.detach().clone()
                continue
            self._check_names(states, labels, {name: buffer}, "buffer")
            if buffer.is_floating_point():
                for state, label in zip(states, labels, strict=True):
                    _check_finite(state, [name], label)
                moving[name] = buffer
            else:
                fixed[name] = states[0][name].detach().to(buffer.dtype).clone()
        self._buffer_names = list(moving)
        self._buffer_shapes = [moving[name].shape for name in moving]
        self._buffer_sizes = [moving[name].numel() for name in moving]
        self._buffer_dtypes = [moving[name].dtype for name in moving]
        dtype = _common_dtype([*self._buffer_dtypes, *(s[n].dtype for s in states for n in moving)], torch.float32)
        for key, state in zip(("_buffers_start", "_buffers_end"), states, strict=True):
            pieces = [state[name].detach().reshape(-1).to(dtype) for name in moving]
            flat = torch.cat(pieces) if pieces else torch.zeros(0, dtype=dtype)
            self.register_buffer(key, flat, persistent=False)
        self._fixed_buffers = _TensorStore(fixed)

    # -- the curve ----------------------------------------------------------------------------------------------------

    @property
    def num_bends(self) -> int:
        return self.shape.num_bends

    def flat_params(self, t: float | Tensor) -> Tensor:
        """``theta(t) = sum_k c_k(t) P_k`` over the curve's parameters, flat and fp32 (or the endpoints' dtype at an
        endpoint when no gradient is needed). Differentiable w.r.t. the control points.
        """
        c = self.shape.coefficients(t).tolist()
        bends = list(self.control_points)
        needs_grad = torch.is_grad_enabled() and any(bend.requires_grad for bend in bends)
        if not needs_grad and c[0] == 1.0:
            return self._start  # the endpoint itself: bit-exact
        if not needs_grad and c[-1] == 1.0:
            return self._end
        # fp32 accumulation; at t in {0, 1} every other weight is exactly 0, so the endpoint comes out bit-exact
        if bends:
            theta = torch.mul(bends[0], c[1])
            for c_k, bend in zip(c[2:-1], bends[1:], strict=True):
                theta = theta.add(bend, alpha=c_k)
            theta = theta.add(self._start, alpha=c[0])
        else:
            theta = torch.mul(self._start.float(), c[0])
        return theta.add(self._end, alpha=c[-1])

    def _unflatten(self, flat: Tensor, names: list[str], sizes: list[int], shapes: list, dtypes: list) -> dict:
        out_dtype = dtypes[0] if len(set(dtypes)) == 1 else None
        if out_dtype is not None:
            flat = flat.to(out_dtype)
        pieces = torch.split(flat, sizes)
        if out_dtype is not None:
            return {name: piece.view(shape) for name, piece, shape in zip(names, pieces, shapes, strict=True)}
        return {n: p.view(s).to(d) for n, p, s, d in zip(names, pieces, shapes, dtypes, strict=True)}

    def params(self, t: float | Tensor) -> dict[str, Tensor]:
        """Every parameter of the template at ``theta(t)``, by name, in the template's dtypes.

        At an endpoint without autograd the tensors are views of the frozen endpoint: read them, do not modify them.
        """
        out = self._unflatten(self.flat_params(t), self.names, self._sizes, self._shapes, self._dtypes)
        out.update(self._fixed_params.items())
        return out

    def buffers_at(self, t: float | Tensor) -> dict[str, Tensor]:
        """Every buffer of the template at ``t`` (fresh tensors, safe for BatchNorm to update in place):
        float buffers ``(1 - t) b_0 + t b_1``, integer buffers from endpoint 0, non-persistent ones the template's.
        """
        t = as_t(t)
        start, end = self._buffers_start, self._buffers_end
        flat = start.clone() if t == 0.0 else end.clone() if t == 1.0 else torch.lerp(start, end, t)
        out = self._unflatten(flat, self._buffer_names, self._buffer_sizes, self._buffer_shapes, self._buffer_dtypes)
        out.update((name, buffer.clone()) for name, buffer in self._fixed_buffers.items())
        return out

    def forward(
        self, t: float | Tensor, batch: Mapping[str, Any], buffers: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Logits of the template at ``theta(t)`` on the batch's model inputs (``policy = partial(curve, t)``).

        ``buffers`` replaces :meth:`buffers_at` (e.g. BatchNorm statistics recomputed at ``t``).
        """
        state = {**self.params(t), **(buffers if buffers is not None else self.buffers_at(t))}
        return functional_forward(self._template, state, batch)

    @torch.no_grad()
    def write_to(self, model: nn.Module, t: float | Tensor) -> nn.Module:
        """Copy ``theta(t)`` and the buffers at ``t`` into ``model`` (of the template's architecture); returns it.

        One ``_foreach_copy_`` over views of the flat theta(t): no per-tensor lookups or clones on the hot path
        (a curve's test writes every t once). Tensors that already share storage with the model are skipped.
        """
        t = as_t(t)
        params = self._unflatten(self.flat_params(t), self.names, self._sizes, self._shapes, self._dtypes)
        start, end = self._buffers_start, self._buffers_end
        moving = start if t == 0.0 else end if t == 1.0 else torch.lerp(start, end, t)
        buffers = self._unflatten(moving, self._buffer_names, self._buffer_sizes, self._buffer_shapes,
                                  self._buffer_dtypes)  # fmt: skip
        sources = {**params, **buffers, **dict(self._fixed_params.items()), **dict(self._fixed_buffers.items())}
        targets = self._write_targets(model, sources)
        pairs = [(targets[n], v) for n, v in sources.items() if targets[n].data_ptr() != v.data_ptr()]
        if pairs:
            destinations, values = zip(*pairs, strict=True)
            torch._foreach_copy_(list(destinations), list(values))
        return model

    def _write_targets(self, model: nn.Module, sources: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The model's tensors by name, checked once per model and cached."""
        cached = self.__dict__.get("_write_targets_cache")  # plain attribute: not state, not a submodule
        if cached is not None and cached[0] is model:
            return cached[1]
        param_names = self._param_name_set
        targets = {}
        for name, value in sources.items():
            try:
                target = model.get_parameter(name) if name in param_names else model.get_buffer(name)
            except AttributeError as error:
                raise ValueError(
                    f"write_to: the model has no tensor '{name}'; is it of the template's architecture?"
                ) from error
            if target.shape != value.shape:
                raise ValueError(
                    f"write_to: '{name}' has shape {tuple(target.shape)} in the model, "
                    f"{tuple(value.shape)} on the curve"
                )
            targets[name] = target.data  # plain tensors: copies into them are not recorded by autograd
        self.__dict__["_write_targets_cache"] = (model, targets)
        return targets

    @property
    def _param_name_set(self) -> set[str]:
        return {*self.names, *self._fixed_params.names}

    @torch.no_grad()
    def path_length(self, ts: Sequence[float]) -> float:
        """``sum_i ||theta(t_{i+1}) - theta(t_i)||_2`` over the curve's parameters (a discretised arc length)."""
        ts = list(ts)
        if len(ts) < 2:
            raise ValueError(f"path_length needs at least two t values, got {ts}")
        total, previous = 0.0, self.flat_params(ts[0]).float()
        for t in ts[1:]:
            current = self.flat_params(t).float()
            total += torch.linalg.vector_norm(current - previous).item()
            previous = current
        return total

    def control_point(self, k: int) -> dict[str, Tensor]:
        """Control point ``k`` (0-based, ``num_bends - 2`` of them) by parameter name, as fp32 views."""
        flat = self.control_points[k]
        return {n: p.view(s) for n, p, s in zip(self.names, flat.split(self._sizes), self._shapes, strict=True)}

    def extra_repr(self) -> str:
        n = sum(self._sizes)
        return f"shape={self.shape}, parameters_on_curve={n:,} in {len(self.names)} tensors, include={self.include!r}"
