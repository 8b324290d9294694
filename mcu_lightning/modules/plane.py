"""The metric plane: the suite evaluated at every point of a grid of the plane through a quadratic curve's three
bends (Garipov et al., 2018, Sec. 5 and Fig. 1). The geometry (basis, grid, the curve's projection) is
:mod:`mcu_lightning.curves.plane`; the files and contour figures are :mod:`mcu_lightning.report.plane`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.curves.batchnorm import has_batchnorm, recompute_batchnorm
from mcu_lightning.curves.curve import Curve
from mcu_lightning.curves.plane import curve_projection, plane_basis, plane_grid
from mcu_lightning.metrics.suite import evaluate_suite


@dataclass
class MetricPlane:
    """A metric plane: ``values[metric][i][j]`` at ``(xs[i], ys[j])``; the bends' coordinates; the curve
    projected (``(t, x, y)`` rows, its distance from the plane in ``off_plane``: ~0 for a three-bend curve)."""

    xs: list[float]
    ys: list[float]
    values: dict[str, list[list[float]]]
    bends: dict[str, tuple[float, float]]
    curve: list[tuple[float, float, float]]
    dx: float
    dy: float
    directions: dict[str, str] = field(default_factory=dict)
    off_plane: float = 0.0

    def rows(self) -> list[dict[str, float]]:
        """One row per grid point: ``grid_x``, ``grid_y``, then each metric."""
        out = []
        for i, x in enumerate(self.xs):
            for j, y in enumerate(self.ys):
                out.append({"grid_x": x, "grid_y": y, **{m: v[i][j] for m, v in self.values.items()}})
        return out


def metric_plane(
    curve: Curve,
    suite: Any,
    batches: Sequence[tuple[str, Mapping[str, Any]]],
    metrics: Sequence[str] | None = None,
    points: int = 7,
    margins: float | tuple[float, float, float, float] = 0.2,
    working: nn.Module | None = None,
    bn_batches: Iterable[Mapping[str, Any]] = (),
    curve_points: int = 61,
    progress: Callable[[int, int], None] | None = None,
) -> MetricPlane:
    """Evaluate ``suite`` at every point of a ``points x points`` grid of the plane through ``curve``'s bends.

    Each grid point ``w_0 + x u + y v`` is written into ``working`` (default: the curve's template, as
    ``CurveModule.test`` does) with :meth:`Curve.write_flat` (non-BatchNorm float buffers at ``t = x / dx`` clipped to
    [0, 1]), BatchNorm statistics are recomputed there over ``bn_batches`` when the model has BatchNorm, and the suite
    runs over ``batches`` (``(split, batch)`` pairs) as for one model. ``metrics``: the aggregates to keep (default:
    all the first point reports). ``progress(done, total)`` after each grid point. Cost: one plain evaluation, one
    weight write (and the BatchNorm passes) per grid point.
    """
    basis = plane_basis(curve)
    xs, ys = plane_grid(basis, points, margins)
    model = working if working is not None else curve.template
    bn = list(bn_batches)
    batchnorm = has_batchnorm(model)
    if batchnorm and not bn:
        raise InputError("the model has BatchNorm: pass bn_batches (retain batches) to recompute it at each point")
    chosen = list(metrics) if metrics is not None else None
    values: dict[str, list[list[float]]] = {}
    directions: dict[str, str] = {}
    flat = torch.empty_like(basis.origin)
    total, done = len(xs) * len(ys), 0
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            with torch.no_grad():
                curve.write_flat(model, basis.point(x, y, out=flat), min(max(x / basis.dx, 0.0), 1.0))
            if batchnorm:
                recompute_batchnorm(model, bn)
            result = evaluate_suite(model.eval(), suite, batches)
            if chosen is None:
                chosen = list(result.aggregates)
            if not values:
                missing = [m for m in chosen if m not in result.aggregates]
                if missing:
                    raise KeyError(f"the suite reports no {missing}; it reports {sorted(result.aggregates)}")
                values = {m: [[math.nan] * len(ys) for _ in xs] for m in chosen}
                directions = {m: result.directions[m] for m in chosen if m in result.directions}
            for m in chosen:
                values[m][i][j] = float(result.aggregates.get(m, math.nan))
            done += 1
            if progress is not None:
                progress(done, total)
    projected, off = curve_projection(curve, basis, curve_points)
    return MetricPlane(
        xs=xs,
        ys=ys,
        values=values,
        bends=dict(basis.bends),
        curve=projected,
        dx=basis.dx,
        dy=basis.dy,
        directions=directions,
        off_plane=off,
    )
