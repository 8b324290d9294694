"""SLERP per tensor between two endpoints: a training-free curve, tested on the same t grid as a trained one.

For each tensor ``v0`` (endpoint 0) and ``v1`` (endpoint 1) of the curve, as mergekit's ``slerp`` merge defines it
(arcee-ai/mergekit, ``mergekit/merge_methods/slerp.py``; Shoemake, 1985, "Animating rotation with quaternion
curves"):

    dot = sum(n(v0) * n(v1)),  n(v) = v / ||v||_2 when ||v||_2 > eps else v  (eps = 1e-8)
    |dot| > 0.9995 (DOT_THRESHOLD): theta(t) = (1 - t) v0 + t v1     (near-parallel: the straight line)
    else: theta_0 = arccos(dot), s0 = sin(theta_0 - t theta_0) / sin(theta_0), s1 = sin(t theta_0) / sin(theta_0),
          theta(t) = s0 v0 + s1 v1                                   (on the unnormalised tensors)

The angle is computed once per tensor (float64) at construction; a point costs two per-tensor scalar lists and
two ``_foreach`` kernels over the flat endpoints, no Python over elements. Float buffers (BatchNorm statistics)
move linearly as on any :class:`~mcu_lightning.curves.curve.Curve` (``test`` recomputes them at each t anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from mcu_lightning.curves.curve import Curve
from mcu_lightning.curves.endpoints import Source
from mcu_lightning.curves.shapes import CurveShape, as_t

DOT_THRESHOLD = 0.9995
NORM_EPS = 1e-8


class Slerp(CurveShape):
    """The SLERP path's shape: two bends (the endpoints), weights per tensor (see :class:`SlerpCurve`).

    Each tensor is weighted by its own angle, so the shape has no weights shared by every tensor
    (``shared_weights = False``) and a plain :class:`Curve` refuses it; ``CurveModule`` builds a :class:`SlerpCurve`
    when its ``shape`` is ``Slerp()``.
    """

    shared_weights = False

    def __init__(self) -> None:
        super().__init__(num_bends=2)

    def __repr__(self) -> str:
        return "Slerp()"


def slerp_angles(
    start: Sequence[Tensor], end: Sequence[Tensor], dot_threshold: float = DOT_THRESHOLD, eps: float = NORM_EPS
) -> tuple[Tensor, Tensor]:
    """Per tensor pair: the angle ``theta_0 = arccos(dot)`` (float64, CPU) and whether it falls back to the line
    (``|dot| > dot_threshold``), with ``dot`` the cosine of the normalised tensors as in the module docstring."""
    dots = []
    for v0, v1 in zip(start, end, strict=True):
        a, b = v0.detach().double().reshape(-1), v1.detach().double().reshape(-1)
        norm_a, norm_b = torch.linalg.vector_norm(a).item(), torch.linalg.vector_norm(b).item()
        dot = torch.dot(a, b).item()
        dots.append(dot / (norm_a if norm_a > eps else 1.0) / (norm_b if norm_b > eps else 1.0))
    dot = torch.tensor(dots, dtype=torch.float64)
    return torch.arccos(dot.clamp(-1.0, 1.0)), dot.abs() > dot_threshold


def slerp_weights(t: float, theta_0: Tensor, linear: Tensor) -> tuple[list[float], list[float]]:
    """``(s0, s1)`` per tensor at ``t``: the SLERP weights, ``(1 - t, t)`` where ``linear``."""
    t = as_t(t)
    sin_0 = torch.sin(theta_0)
    s0 = torch.where(linear, 1.0 - t, torch.sin(theta_0 - t * theta_0) / sin_0)
    s1 = torch.where(linear, t, torch.sin(t * theta_0) / sin_0)
    return s0.tolist(), s1.tolist()


class SlerpCurve(Curve):
    """SLERP per tensor from endpoint 0 to endpoint 1 (mergekit's ``slerp``, see the module docstring).

    A :class:`Curve` with no free points (``parameters()`` is empty): ``CurveModule`` tests it without fit.
    ``theta(0)`` and ``theta(1)`` are the endpoints bit for bit; a near-parallel tensor (``|cos| > 0.9995``) moves
    on the straight line. ``include``/``trainable`` select the tensors on the curve as for :class:`Curve`.
    """

    weights_per_tensor = True

    def __init__(
        self,
        template: nn.Module,
        endpoints: Sequence[Source],
        include: str | None = None,
        trainable: Callable[[str], bool] | None = None,
        dot_threshold: float = DOT_THRESHOLD,
    ) -> None:
        super().__init__(template, endpoints, shape=Slerp(), include=include, trainable=trainable)
        self.dot_threshold = float(dot_threshold)
        theta_0, linear = slerp_angles(self._start.split(self._sizes), self._end.split(self._sizes), dot_threshold)
        # plain tensors, not buffers: they stay on the CPU, where the per-tensor scalars are computed
        self._theta_0, self._linear = theta_0, linear

    def endpoint_weights(self, t: float | Tensor) -> tuple[list[float], list[float]]:
        """``(s0, s1)``: each endpoint's weight at ``t``, one per tensor on the curve (in ``self.names`` order)."""
        return slerp_weights(as_t(t), self._theta_0, self._linear)

    def flat_params(self, t: float | Tensor) -> Tensor:
        """``theta(t)`` over the curve's parameters, flat: ``s0_k v0_k + s1_k v1_k`` per tensor ``k`` (fp32), the
        stored endpoint itself at ``t = 0`` and ``t = 1``."""
        t = as_t(t)
        if t == 0.0:
            return self._start
        if t == 1.0:
            return self._end
        s0, s1 = self.endpoint_weights(t)
        theta = self._start.to(torch.promote_types(self._start.dtype, torch.float32), copy=True)
        pieces = list(theta.split(self._sizes))
        torch._foreach_mul_(pieces, s0)
        torch._foreach_add_(pieces, torch._foreach_mul(list(self._end.to(theta.dtype).split(self._sizes)), s1))
        return theta

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, near-parallel tensors on the line: {int(self._linear.sum())}/{len(self.names)}"
