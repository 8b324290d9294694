"""A curve in weight space between two frozen endpoints, for any ``nn.Module`` (no layer rewriting).

``theta(t) = sum_k c_k(t) P_k`` (Garipov et al., 2018, Eq. 1-2) with ``P_0``, ``P_{n-1}`` the endpoints (frozen
buffers in their own dtype) and ``P_1 .. P_{n-2}`` the trainable fp32 control points. The curve's parameters live
as ONE flat tensor per bend, so a step costs a few large ``mul``/``add`` kernels and a ``split``, not a Python loop of
arithmetic over every tensor; the template then runs at ``theta(t)`` with the pieces swapped into its slots (what
``torch.func.functional_call`` does, with the names resolved once: :mod:`mcu_lightning.curves.reparametrize`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.curves.reparametrize import Reparametrization
from mcu_lightning.curves.shapes import Bezier, CurveShape, as_t
from mcu_lightning.curves.template import NamedGradients, TemplateCurve, functional_forward
from mcu_lightning.models.io import load_state_dict

Source = str | os.PathLike | Mapping[str, Tensor]


class _TensorStore(nn.Module):
    """Named tensors kept as non-persistent buffers, so they follow ``.to(device)`` but stay out of checkpoints."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.names = list(tensors)
        for i, tensor in enumerate(tensors.values()):
            self.register_buffer(f"t{i}", tensor, persistent=False)

    def values(self) -> list[Tensor]:
        return list(self._buffers.values())

    def items(self) -> list[tuple[str, Tensor]]:
        return list(zip(self.names, self._buffers.values(), strict=True))


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
            raise InputError(f"endpoint {label} has non-finite values (NaN or inf) in '{name}'")


def _common_dtype(dtypes: Sequence[torch.dtype], floor: torch.dtype | None = None) -> torch.dtype:
    """The one dtype shared by all ``dtypes``, or their promotion (at least ``floor``) when they differ."""
    unique = set(dtypes)
    if len(unique) == 1 and floor is None:
        return unique.pop()
    out = floor or torch.float32
    for dtype in unique:
        out = torch.promote_types(out, dtype)
    return out


class _WritePlan:
    """The targets of :meth:`Curve.write_to` in one model: flat views of its tensors, in the order sources come."""

    def __init__(self, model: nn.Module, slots: Reparametrization, curve_tensor: Tensor) -> None:
        self.model, self.slots = model, slots
        self.pointers = [tensor.data_ptr() for tensor in slots.current()]
        self.curve_pointer = curve_tensor.data_ptr()
        self.targets: list[Tensor] = []  # flat views of the model's tensors (shaped ones when not contiguous)
        self.fixed: list[Tensor] = []  # after theta(t)'s and the moving buffers' pieces: the off-curve tensors the
        # model does not already share
        self.reshape: list[tuple[int, torch.Size]] = []  # sources to view in the target's shape

    def is_current(self, curve_tensor: Tensor) -> bool:
        """Neither the model's tensors nor the curve's have moved (``.to()``, reassignment) since the plan."""
        if curve_tensor.data_ptr() != self.curve_pointer:
            return False
        return [tensor.data_ptr() for tensor in self.slots.current()] == self.pointers


class Curve(TemplateCurve):
    """Frozen endpoints + trainable control points over a frozen ``template`` module.

    Args:
        template: a module of the endpoints' architecture. The curve never trains nor writes it (it runs it with
            its tensors swapped in), and it is not a submodule: ``curve.parameters()`` are the control points alone.
        endpoints: the two endpoints, each a path (see :func:`mcu_lightning.models.io.load_state_dict`) or a state dict.
        shape: the curve shape (``Bezier(3)``: one control point, the MCU setting).
        init: ``"linear"`` puts control point ``k`` on the straight line at ``t_k = k / (n - 1)``; a path or state dict
            puts every control point at that model (the MCU authors' choice: the model before unlearning).
        include: a regex (``re.search`` on parameter names); only matching parameters are on the curve, the others
            stay at endpoint 0 and must agree between the endpoints (e.g. ``"lora_"`` for a LoRA-space curve).
        trainable: a predicate on parameter names that restricts the curve further, as ``include`` does (a curve
            objective's ``is_trainable``: RMU's layers).
        fixed_bends: keep the interior bends at ``init`` as frozen buffers instead of trainable control points: a
            training-free curve with no free points (``curve.parameters()`` is empty). ``PolyChain(3)`` with
            ``init=<base model>`` is the path endpoint 0 -> base -> endpoint 1.

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
        trainable: Callable[[str], bool] | None = None,
        fixed_bends: bool = False,
    ) -> None:
        super().__init__(template)
        if len(endpoints) != 2:
            raise InputError(f"a curve needs exactly two endpoints, got {len(endpoints)}")
        self.shape = shape if shape is not None else Bezier(3)
        self.include = include
        self._selection = f"include={include!r}" + (" and the objective's is_trainable" if trainable else "")
        labels = [_label(source, i) for i, source in enumerate(endpoints)]
        groups = _tie_groups(template)
        states = [_retie(_resolve(source), groups) for source in endpoints]
        named = dict(template.named_parameters())
        self._check_names(states, labels, named, "parameter")
        on_curve = [name for name in named if include is None or re.search(include, name)]
        if not on_curve:
            raise InputError(f"include={include!r} matches no parameter of the template (e.g. '{next(iter(named))}')")
        if trainable is not None:
            kept = [name for name in on_curve if trainable(name)]
            if not kept:
                raise InputError(
                    f"the curve objective trains none of the parameters include={include!r} selects (e.g. "
                    f"'{on_curve[0]}'); widen the objective's trainable pattern or include"
                )
            on_curve = kept
        off_curve = [name for name in named if name not in set(on_curve)]
        for state, label in zip(states, labels, strict=True):
            _check_finite(state, on_curve, label)
        self._check_off_curve(states, labels, off_curve)
        if all(torch.equal(states[0][name], states[1][name]) for name in on_curve):
            raise InputError(f"a curve needs two different endpoints; {labels[0]} and {labels[1]} are identical")

        # the curve's parameters, flat: one buffer per endpoint (own dtype), one fp32 Parameter per control point
        self.names = on_curve
        self._shapes = [named[name].shape for name in on_curve]
        self._sizes = [named[name].numel() for name in on_curve]
        self._dtypes = [named[name].dtype for name in on_curve]
        flat_dtype = _common_dtype([states[i][name].dtype for i in (0, 1) for name in on_curve])
        for key, state in zip(("_start", "_end"), states, strict=True):
            flat = torch.cat([state[name].detach().reshape(-1).to(flat_dtype) for name in on_curve])
            self.register_buffer(key, flat, persistent=False)
        bends = self._initial_bends(init, groups, named, on_curve)
        self.fixed_bends = bool(fixed_bends)
        self.control_points = nn.ParameterList([] if fixed_bends else [nn.Parameter(bend) for bend in bends])
        self._frozen_bends = _TensorStore({f"bend{k}": bend for k, bend in enumerate(bends, 1)} if fixed_bends else {})
        self._fixed_params = _TensorStore({name: states[0][name].detach().to(named[name].dtype) for name in off_curve})
        self._init_buffers(template, states, labels)
        self._param_order = [*self.names, *self._fixed_params.names]
        self._buffer_order = [*self._buffer_names, *self._fixed_buffers.names]
        self._reparametrization = Reparametrization(template, [*self._param_order, *self._buffer_order])

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
                    raise InputError(
                        f"endpoints {labels[0]} and {labels[1]} both lack {kind} '{name}' of the template; "
                        "are they models of the template's architecture?"
                    )
                have, lack = (0, 1) if present[0] else (1, 0)
                raise InputError(f"endpoint {labels[lack]} lacks {kind} '{name}' that endpoint {labels[have]} has")
            shapes = [tuple(state[name].shape) for state in states]
            if shapes[0] != shapes[1]:
                raise InputError(
                    f"{kind} '{name}' has shape {shapes[0]} in endpoint {labels[0]} but {shapes[1]} in {labels[1]}"
                )
            if shapes[0] != tuple(reference.shape):
                raise InputError(
                    f"{kind} '{name}' has shape {shapes[0]} in the endpoints "
                    f"but {tuple(reference.shape)} in the template"
                )

    def _check_off_curve(self, states: list[dict[str, Tensor]], labels: list[str], off_curve: list[str]) -> None:
        for name in off_curve:
            if not torch.equal(states[0][name], states[1][name]):
                raise InputError(
                    f"parameter '{name}' is off the curve ({self._selection}) but differs between endpoints "
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
                raise InputError(f"{label} lacks parameter '{name}' that the endpoints have")
            if tuple(state[name].shape) != tuple(named[name].shape):
                raise InputError(
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

    def trained_names(self) -> list[str]:
        """The template's parameters on the curve (``include`` and the objective's ``is_trainable``), in order."""
        return list(self.names)

    def _interior_bends(self) -> list[Tensor]:
        """``P_1 .. P_{n-2}``, flat: the control points, or the frozen bends of a ``fixed_bends`` curve."""
        return [*self.control_points._parameters.values(), *self._frozen_bends.values()]  # not per-item getattr

    def flat_params(self, t: float | Tensor) -> Tensor:
        """``theta(t) = sum_k c_k(t) P_k`` over the curve's parameters, flat and fp32 (or the endpoints' dtype at an
        endpoint when no gradient is needed). Differentiable w.r.t. the control points.
        """
        c = self.shape.weights(t)
        bends = self._interior_bends()
        needs_grad = torch.is_grad_enabled() and any(bend.requires_grad for bend in bends)
        if not needs_grad and c[0] == 1.0:
            return self._start  # the endpoint itself: bit-exact
        if not needs_grad and c[-1] == 1.0:
            return self._end
        # fp32 accumulation; at t in {0, 1} every other weight is exactly 0, so the endpoint comes out bit-exact
        # one fresh tensor, accumulated in place (autograd-safe: no op here saves theta for its backward)
        if bends:
            theta = torch.mul(bends[0], c[1]).to(torch.promote_types(bends[0].dtype, self._start.dtype))
            for c_k, bend in zip(c[2:-1], bends[1:], strict=True):
                theta.add_(bend, alpha=c_k)
            theta.add_(self._start, alpha=c[0])
        else:
            theta = torch.mul(self._start.float(), c[0])
        return theta.add_(self._end, alpha=c[-1])

    @staticmethod
    def _pieces(flat: Tensor, sizes: list[int], shapes: list, dtypes: list) -> list[Tensor]:
        """``flat`` split into tensors of ``shapes`` (views when one dtype is shared, else converted copies)."""
        if not sizes:
            return []
        if len(set(dtypes)) == 1:
            flat = flat.to(dtypes[0])
            return [piece.view(shape) for piece, shape in zip(flat.split(sizes), shapes, strict=True)]
        return [p.view(s).to(d) for p, s, d in zip(flat.split(sizes), shapes, dtypes, strict=True)]

    def _param_values(self, t: float | Tensor) -> list[Tensor]:
        """The template's parameters at ``theta(t)`` in ``_param_order``: pieces of theta(t), then the fixed ones."""
        pieces = self._pieces(self.flat_params(t), self._sizes, self._shapes, self._dtypes)
        return [*pieces, *self._fixed_params.values()]

    def _flat_buffers(self, t: float) -> Tensor:
        """The moving buffers at ``t``, flat: ``(1 - t) b_0 + t b_1``, the stored endpoint itself at 0 and 1."""
        start, end = self._buffers_start, self._buffers_end
        return start if t == 0.0 else end if t == 1.0 else torch.lerp(start, end, t)

    @torch.no_grad()
    def _buffer_values(self, t: float | Tensor) -> list[Tensor]:
        """The template's buffers at ``t`` in ``_buffer_order``, fresh tensors (BatchNorm may update them)."""
        t = as_t(t)
        flat = self._flat_buffers(t)
        flat = flat.clone() if t in (0.0, 1.0) else flat  # at an endpoint it is the stored buffer itself
        pieces = self._pieces(flat, self._buffer_sizes, self._buffer_shapes, self._buffer_dtypes)
        return [*pieces, *(buffer.clone() for buffer in self._fixed_buffers.values())]

    def params(self, t: float | Tensor) -> dict[str, Tensor]:
        """Every parameter of the template at ``theta(t)``, by name, in the template's dtypes.

        At an endpoint without autograd the tensors are views of the frozen endpoint: read them, do not modify them.
        """
        return dict(zip(self._param_order, self._param_values(t), strict=True))

    def buffers_at(self, t: float | Tensor) -> dict[str, Tensor]:
        """Every buffer of the template at ``t`` (fresh tensors, safe for BatchNorm to update in place):
        float buffers ``(1 - t) b_0 + t b_1``, integer buffers from endpoint 0, non-persistent ones the template's.
        """
        return dict(zip(self._buffer_order, self._buffer_values(t), strict=True))

    def forward(
        self, t: float | Tensor, batch: Mapping[str, Any], buffers: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Logits of the template at ``theta(t)`` on the batch's model inputs (``policy = partial(curve, t)``).

        ``buffers`` replaces :meth:`buffers_at` (e.g. BatchNorm statistics recomputed at ``t``).
        """
        values = self._param_values(t)
        if buffers is None:
            values += self._buffer_values(t)
        else:
            missing = [name for name in self._buffer_order if name not in buffers]
            if missing:
                raise InputError(f"buffers lacks '{missing[0]}' of the template; pass every buffer of buffers_at(t)")
            values += [buffers[name] for name in self._buffer_order]
        return functional_forward(self._template, self._reparametrization, values, batch)

    @torch.no_grad()
    def write_to(self, model: nn.Module, t: float | Tensor) -> nn.Module:
        """Copy ``theta(t)`` and the buffers at ``t`` into ``model`` (of the template's architecture); returns it.

        The first call with a model resolves and checks its tensors and keeps flat views of them; every call then
        computes theta(t) (and the moving buffers) flat and copies it with one ``_foreach_copy_``, with no Python
        per tensor (a curve's test writes every t). Off-curve tensors that share storage with the model are skipped.
        """
        t = as_t(t)
        return self.write_flat(model, self.flat_params(t), t)

    @torch.no_grad()
    def write_flat(self, model: nn.Module, flat: Tensor, buffers_t: float = 0.0) -> nn.Module:
        """Copy the curve's parameters given flat (:meth:`flat_params`' layout: any point of their space, such as
        one of the plane through the bends), the moving buffers at ``buffers_t`` and the off-curve tensors into
        ``model``, as :meth:`write_to` does for ``theta(t)``; returns it."""
        if flat.shape != self._start.shape:
            raise InputError(f"write_flat: a flat vector of {self._start.numel()} values, got {tuple(flat.shape)}")
        t = as_t(buffers_t)
        plan = self._write_plan(model)
        sources = [*flat.split(self._sizes)]
        if self._buffer_sizes:
            sources += self._flat_buffers(t).split(self._buffer_sizes)
        sources += plan.fixed
        for i, shape in plan.reshape:
            sources[i] = sources[i].view(shape)
        if plan.targets:
            torch._foreach_copy_(plan.targets, sources)
        return model

    def _write_plan(self, model: nn.Module) -> _WritePlan:
        """Where :meth:`write_to` copies into ``model``: resolved once, kept while the model's tensors stay put."""
        plan = self.__dict__.get("_write_plan_cache")  # plain attribute: not state, not a submodule
        if plan is not None and plan.model is model and plan.is_current(self._start):
            return plan
        names = [*self.names, *self._buffer_names, *self._fixed_params.names, *self._fixed_buffers.names]
        try:
            slots = Reparametrization(model, names)
        except ValueError as error:
            raise InputError(f"write_to: {error}; is the model of the template's architecture?") from error
        moving = len(self._shapes) + len(self._buffer_shapes)
        fixed = [*self._fixed_params.values(), *self._fixed_buffers.values()]
        shapes = [*self._shapes, *self._buffer_shapes, *(source.shape for source in fixed)]
        plan = _WritePlan(model, slots, self._start)
        for i, (name, target, shape) in enumerate(zip(names, slots.current(), shapes, strict=True)):
            if target.shape != shape:
                raise InputError(
                    f"write_to: '{name}' has shape {tuple(target.shape)} in the model, {tuple(shape)} on the curve"
                )
            contiguous = target.is_contiguous()
            if i < moving:  # a piece of theta(t) or of the moving buffers: flat, viewed in shape if it must be
                if not contiguous:
                    plan.reshape.append((len(plan.targets), shape))
            else:
                source = fixed[i - moving]
                if source.data_ptr() == target.data_ptr():
                    continue  # already the model's own tensor (a LoRA curve's frozen base)
                plan.fixed.append(source.reshape(-1) if contiguous else source)
            plan.targets.append(target.detach().view(-1) if contiguous else target.detach())
        self.__dict__["_write_plan_cache"] = plan
        return plan

    @torch.no_grad()
    def path_length(self, ts: Sequence[float]) -> float:
        """``sum_i ||theta(t_{i+1}) - theta(t_i)||_2`` over the curve's parameters (a discretised arc length)."""
        ts = list(ts)
        if len(ts) < 2:
            raise InputError(f"path_length needs at least two t values, got {ts}")
        total, previous = 0.0, self.flat_params(ts[0]).float()
        for t in ts[1:]:
            current = self.flat_params(t).float()
            total += torch.linalg.vector_norm(current - previous).item()
            previous = current
        return total

    def control_point(self, k: int) -> dict[str, Tensor]:
        """Control point ``k`` (0-based, ``num_bends - 2`` of them; frozen ones too) by parameter name, fp32 views."""
        flat = self._interior_bends()[k]
        return {n: p.view(s) for n, p, s in zip(self.names, flat.split(self._sizes), self._shapes, strict=True)}

    def control_point_gradients(self) -> NamedGradients:
        """``(name, gradient slice)`` for every control point that has a gradient and every parameter on the curve:
        the control point's flat ``.grad`` split per parameter and viewed in its shape (views, so in-place edits such
        as a per-name gradient mask reach the gradient the optimizer reads)."""
        pairs: list[tuple[str, Tensor]] = []
        for point in self.control_points:
            if point.grad is not None:
                pieces = point.grad.split(self._sizes)
                pairs += [(n, p.view(s)) for n, p, s in zip(self.names, pieces, self._shapes, strict=True)]
        return pairs

    def extra_repr(self) -> str:
        n = sum(self._sizes)
        fixed = ", fixed_bends=True" if self.fixed_bends else ""
        return (
            f"shape={self.shape}, parameters_on_curve={n:,} in {len(self.names)} tensors, include={self.include!r}"
            f"{fixed}"
        )
