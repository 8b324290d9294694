"""The metric plane through the three bends of a quadratic curve (Garipov et al., 2018, Sec. 5 and Fig. 1;
``plane.py`` of their ``dnn-mode-connectivity`` code).

With ``w_0``, ``w_1`` the endpoints and ``theta`` the control point, flat over the curve's parameters:

    u = (w_1 - w_0) / dx,                dx = ||w_1 - w_0||
    v = (r - <r, u> u) / dy,  r = theta - w_0,  dy = ||r - <r, u> u||

an orthonormal basis (Gram-Schmidt) of the plane through the three points; a point's coordinates are
``(x, y) = (<p - w_0, u>, <p - w_0, v>)`` and ``p(x, y) = w_0 + x u + y v``. So ``w_0 = (0, 0)``, ``w_1 = (dx, 0)``
and ``theta = (<r, u>, dy)``; the straight line is the x axis from 0 to dx, and a curve of three bends lies in the
plane at every t (``theta(t)`` is an affine combination of the bends). The grid is ``G x G`` points
``x_i, y_j`` evenly spaced over the bends' extent widened by margins (Garipov et al.'s ``[-0.2, 1.2] dx`` by
``[-0.2, 1.2] dy`` when theta's x lies between the endpoints). Off-curve tensors stay fixed; BatchNorm statistics are
recomputed at every grid point when the model has BatchNorm (their ``update_bn``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.curves.curve import Curve

#: dot products run in float64 over chunks of this many values (no float64 copy of an LLM's weights)
_CHUNK = 1 << 22


def _dot(a: Tensor, b: Tensor) -> float:
    """``<a, b>`` accumulated in float64, chunk by chunk."""
    total = 0.0
    for x, y in zip(a.split(_CHUNK), b.split(_CHUNK), strict=True):
        total += float(torch.dot(x.double(), y.double()))
    return total


@dataclass
class PlaneBasis:
    """Origin ``w_0`` and the orthonormal ``u``, ``v`` of the plane (flat, fp32), with ``dx = ||w_1 - w_0||``, the
    control point's distance ``dy`` from the line, and the bends' coordinates ``{"w0", "theta", "w1"} -> (x, y)``."""

    origin: Tensor
    u: Tensor
    v: Tensor
    dx: float
    dy: float
    bends: dict[str, tuple[float, float]]

    def coordinates(self, point: Tensor) -> tuple[float, float]:
        """``(<p - w_0, u>, <p - w_0, v>)`` of a flat point."""
        r = point.detach().float() - self.origin
        return _dot(r, self.u), _dot(r, self.v)

    def point(self, x: float, y: float, out: Tensor | None = None) -> Tensor:
        """``w_0 + x u + y v``, flat fp32 (into ``out`` when given)."""
        out = torch.mul(self.u, x, out=out) if out is not None else self.u * x
        return out.add_(self.v, alpha=y).add_(self.origin)


def plane_basis(curve: Curve, tolerance: float = 1e-6) -> PlaneBasis:
    """The basis of the plane through ``curve``'s endpoints and control point (a curve of exactly three bends).

    Refuses another kind of curve, and a control point on the straight line (``dy <= tolerance * dx`` or within
    fp32 rounding of the weights: an untrained ``init="linear"`` curve, or ``init=`` an endpoint), which spans no
    plane.
    """
    if not isinstance(curve, Curve):
        raise TypeError(
            f"the metric plane needs a Curve (flat parameters with one control point), got {type(curve).__name__}"
        )
    if curve.num_bends != 3:
        raise InputError(
            f"the metric plane runs through three bends (endpoints and one control point, Bezier(3)); this curve is "
            f"{curve.shape} with {curve.num_bends} bends"
        )
    with torch.no_grad():
        start, bend, stop = curve.flat_bends()  # bend: a control point, or a fixed_bends curve's frozen bend
        origin = start.float()
        end = stop.float()
        theta = bend.detach().float()
        u = end - origin
        dx = math.sqrt(_dot(u, u))
        u.div_(dx)
        v = theta - origin
        along = _dot(v, u)
        v.add_(u, alpha=-along)
        dy = math.sqrt(max(_dot(v, v), 0.0))
        scale = max(math.sqrt(_dot(w, w)) for w in (origin, end, theta))
        rounding = 16 * torch.finfo(torch.float32).eps * scale
        if dy <= max(tolerance * dx, rounding):
            raise InputError(
                f"the control point lies on the straight line between the endpoints (distance {dy:.3g} from it, "
                f"endpoints {dx:.3g} apart), so the three bends span no plane; train the curve first (an "
                "init='linear' curve starts on the line)"
            )
        v.div_(dy)
    bends = {"w0": (0.0, 0.0), "theta": (along, dy), "w1": (dx, 0.0)}
    return PlaneBasis(origin=origin, u=u, v=v, dx=dx, dy=dy, bends=bends)


def plane_grid(
    basis: PlaneBasis, points: int = 7, margins: float | tuple[float, float, float, float] = 0.2
) -> tuple[list[float], list[float]]:
    """The grid's x and y values: ``points`` evenly spaced over the bends' extent in each direction, widened by
    ``margins`` (left, right, bottom, top) as fractions of that extent (Garipov et al.: 0.2 each)."""
    if points < 2:
        raise InputError(f"a plane grid needs at least 2 points a side, got {points}")
    left, right, bottom, top = (margins,) * 4 if isinstance(margins, (int, float)) else margins
    xs = [x for x, _ in basis.bends.values()]
    ys = [y for _, y in basis.bends.values()]

    def axis(low: float, high: float, before: float, after: float) -> list[float]:
        width = high - low
        start, stop = low - before * width, high + after * width
        return [start + (stop - start) * i / (points - 1) for i in range(points)]

    return axis(min(xs), max(xs), left, right), axis(min(ys), max(ys), bottom, top)


def curve_projection(
    curve: Curve, basis: PlaneBasis, points: int = 61, checks: Sequence[float] = (0.25, 0.5, 0.75)
) -> tuple[list[tuple[float, float, float]], float]:
    """``(t, x, y)`` of ``theta(t)`` on ``points`` evenly spaced t, and the largest distance from the plane of the
    curve at the ``checks`` t (relative to ``dx``; ~0: a three-bend curve lies in its plane).

    Coordinates are affine and ``theta(t) = sum_k c_k(t) P_k`` with ``sum_k c_k(t) = 1``, so ``(x, y)(t) =
    sum_k c_k(t) (x_k, y_k)`` from the bends' coordinates: no pass over the weights per t.
    """
    bends = [basis.bends[name] for name in ("w0", "theta", "w1")]
    rows = []
    for i in range(points):
        t = i / (points - 1)
        c = curve.shape.weights(t)
        rows.append((t, sum(w * x for w, (x, _) in zip(c, bends, strict=True)),
                     sum(w * y for w, (_, y) in zip(c, bends, strict=True))))  # fmt: skip
    off = 0.0
    with torch.no_grad():
        for t in checks:
            flat = curve.flat_params(t).float()
            residual = flat - basis.point(*basis.coordinates(flat))
            off = max(off, math.sqrt(_dot(residual, residual)) / basis.dx)
    return rows, off
