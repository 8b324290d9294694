"""A curve in weight space between two frozen endpoints, for any ``nn.Module`` (no layer rewriting).

``theta(t) = sum_k c_k(t) P_k`` (Garipov et al., 2018, Eq. 1-2) with ``P_0``, ``P_{n-1}`` the endpoints (frozen
buffers in their own dtype) and ``P_1 .. P_{n-2}`` the trainable fp32 control points. The curve's parameters live
as ONE flat tensor per bend, so a step costs a few large ``mul``/``add`` kernels and a ``split``, not a Python loop of
arithmetic over every tensor; the template then runs at ``theta(t)`` with the pieces swapped into its slots (what
``torch.func.functional_call`` does, with the names resolved once: :mod:`mcu_lightning.curves.reparametrize`).

The endpoints are loaded and checked by :mod:`mcu_lightning.curves.endpoints`, the flat layout's helpers are in
:mod:`mcu_lightning.curves.flat`, and :meth:`Curve.write_to`'s targets in a model are a
:class:`~mcu_lightning.curves.write_plan.WritePlan`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.curves.endpoints import (
    Source,
    check_distinct,
    check_finite,
    check_init,
    check_names,
    check_off_curve,
    check_two_endpoints,
    endpoint_label,
    load_endpoint,
    parameter_ties,
    retie,
)
from mcu_lightning.curves.flat import TensorStore, common_dtype, pieces
from mcu_lightning.curves.reparametrize import Reparametrization
from mcu_lightning.curves.shapes import Bezier, CurveShape, as_t
from mcu_lightning.curves.template import NamedGradients, TemplateCurve, functional_forward
from mcu_lightning.curves.write_plan import WritePlan


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

    #: Whether this kind computes theta(t) with weights per tensor (:class:`~mcu_lightning.curves.slerp.SlerpCurve`),
    #: so it takes a shape without ``shared_weights``; a plain Curve mixes the bends with the shape's weights.
    weights_per_tensor: ClassVar[bool] = False

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
        check_two_endpoints(endpoints)
        self.shape = shape if shape is not None else Bezier(3)
        if not self.shape.shared_weights and not self.weights_per_tensor:
            raise InputError(
                f"{self.shape!r} weights each tensor on its own, so a plain Curve cannot use it; build its curve kind "
                "(a SlerpCurve for Slerp())"
            )
        self.include = include
        self._selection = f"include={include!r}" + (" and the objective's is_trainable" if trainable else "")
        labels = [endpoint_label(source, i) for i, source in enumerate(endpoints)]
        ties = parameter_ties(template)
        states = [retie(load_endpoint(source), ties) for source in endpoints]
        named = dict(template.named_parameters())
        check_names(states, labels, named, "parameter")
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
            check_finite(state, on_curve, label)
        check_off_curve(states, labels, off_curve, self._selection)
        check_distinct(states, on_curve, f"{labels[0]} and {labels[1]}")

        # the curve's parameters, flat: one buffer per endpoint (own dtype), one fp32 Parameter per control point
        self.names = on_curve
        self._shapes = [named[name].shape for name in on_curve]
        self._sizes = [named[name].numel() for name in on_curve]
        self._dtypes = [named[name].dtype for name in on_curve]
        flat_dtype = common_dtype([states[i][name].dtype for i in (0, 1) for name in on_curve])
        for key, state in zip(("_start", "_end"), states, strict=True):
            flat = torch.cat([state[name].detach().reshape(-1).to(flat_dtype) for name in on_curve])
            self.register_buffer(key, flat, persistent=False)
        bends = self._initial_bends(init, ties, named, on_curve)
        self.fixed_bends = bool(fixed_bends)
        self.control_points = nn.ParameterList([] if fixed_bends else [nn.Parameter(bend) for bend in bends])
        self._frozen_bends = TensorStore({f"bend{k}": bend for k, bend in enumerate(bends, 1)} if fixed_bends else {})
        self._fixed_params = TensorStore({name: states[0][name].detach().to(named[name].dtype) for name in off_curve})
        self._init_buffers(template, states, labels)
        self._param_order = [*self.names, *self._fixed_params.names]
        self._buffer_order = [*self._buffer_names, *self._fixed_buffers.names]
        self._reparametrization = Reparametrization(template, [*self._param_order, *self._buffer_order])

    # -- construction helpers -------------------------------------------------------------------------------------

    def _initial_bends(
        self, init: Source, ties: Mapping[str, list[str]], named: Mapping[str, Tensor], on_curve: list[str]
    ) -> list[Tensor]:
        """The control points' starting values, fp32 flat: on the straight line, or all at the ``init`` model."""
        inner = self.shape.bend_ts()[1:-1]
        if isinstance(init, str) and init == "linear":
            start, end = self._start.float(), self._end.float()
            return [torch.lerp(start, end, t_k) for t_k in inner]
        state = retie(load_endpoint(init), ties)
        label = f"init {endpoint_label(init, 0)}" if not isinstance(init, Mapping) else "init state dict"
        check_init(state, on_curve, named, label)
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
            check_names(states, labels, {name: buffer}, "buffer")
            if buffer.is_floating_point():
                for state, label in zip(states, labels, strict=True):
                    check_finite(state, [name], label)
                moving[name] = buffer
            else:
                fixed[name] = states[0][name].detach().to(buffer.dtype).clone()
        self._buffer_names = list(moving)
        self._buffer_shapes = [moving[name].shape for name in moving]
        self._buffer_sizes = [moving[name].numel() for name in moving]
        self._buffer_dtypes = [moving[name].dtype for name in moving]
        dtype = common_dtype([*self._buffer_dtypes, *(s[n].dtype for s in states for n in moving)], torch.float32)
        for key, state in zip(("_buffers_start", "_buffers_end"), states, strict=True):
            parts = [state[name].detach().reshape(-1).to(dtype) for name in moving]
            flat = torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)
            self.register_buffer(key, flat, persistent=False)
        self._fixed_buffers = TensorStore(fixed)

    # -- the curve ----------------------------------------------------------------------------------------------------

    def trained_names(self) -> list[str]:
        """The template's parameters on the curve (``include`` and the objective's ``is_trainable``), in order."""
        return list(self.names)

    def flat_bends(self) -> list[Tensor]:
        """``P_0 .. P_{n-1}``, flat: endpoint 0 and 1 as stored (their dtype), the interior bends (fp32) between."""
        return [self._start, *self._interior_bends(), self._end]

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

    def _param_values(self, t: float | Tensor) -> list[Tensor]:
        """The template's parameters at ``theta(t)`` in ``_param_order``: pieces of theta(t), then the fixed ones."""
        values = pieces(self.flat_params(t), self._sizes, self._shapes, self._dtypes)
        return [*values, *self._fixed_params.values()]

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
        values = pieces(flat, self._buffer_sizes, self._buffer_shapes, self._buffer_dtypes)
        return [*values, *(buffer.clone() for buffer in self._fixed_buffers.values())]

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
        moving = [*flat.split(self._sizes)]
        if self._buffer_sizes:
            moving += self._flat_buffers(t).split(self._buffer_sizes)
        plan.copy(moving)
        return model

    def _write_plan(self, model: nn.Module) -> WritePlan:
        """Where :meth:`write_to` copies into ``model``: resolved once, kept while the model's tensors stay put."""
        plan = self.__dict__.get("_write_plan_cache")  # plain attribute: not state, not a submodule
        if plan is not None and plan.is_current(model, self._start):
            return plan
        names = [*self.names, *self._buffer_names, *self._fixed_params.names, *self._fixed_buffers.names]
        fixed = [*self._fixed_params.values(), *self._fixed_buffers.values()]
        plan = WritePlan(model, names, [*self._shapes, *self._buffer_shapes], fixed, self._start)
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
                parts = point.grad.split(self._sizes)
                pairs += [(n, p.view(s)) for n, p, s in zip(self.names, parts, self._shapes, strict=True)]
        return pairs

    def extra_repr(self) -> str:
        n = sum(self._sizes)
        fixed = ", fixed_bends=True" if self.fixed_bends else ""
        return (
            f"shape={self.shape}, parameters_on_curve={n:,} in {len(self.names)} tensors, include={self.include!r}"
            f"{fixed}"
        )
