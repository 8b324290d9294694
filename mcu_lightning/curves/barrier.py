"""Barriers along a curve: how much worse a metric gets between the endpoints than at them.

Definitions for a lower-is-better series ``m(t_i)`` (Garipov et al., 2018; Frankle et al., 2020;
Cheng & Amiri, 2025), each reported with the ``t`` of its maximum::

    vs_line     = max_i [m(t_i) - ((1 - t_i) m(0) + t_i m(1))]
    vs_max_end  = max_i m(t_i) - max(m(0), m(1))
    vs_mean_end = max_i m(t_i) - (m(0) + m(1)) / 2

A higher-is-better series (accuracy, ROUGE) is negated first, so a barrier is always "how much worse", in the
metric's units, and positive when the path is worse than the reference. The maximum runs over every ``t_i``,
endpoints included, so ``vs_line >= 0`` and ``vs_max_end >= 0``.

:func:`summarize_series` takes the metric's direction in the unlearning reading (the suites' ``direction``):
``higher`` is negated, ``lower`` kept, ``zero`` (better closer to 0, privleak) read as ``|m|``, and ``none`` (a
holdout split's values) is summarised by its endpoint values only: no barrier, no best point, never "beats".

NaN rule: a NaN at an interior ``t`` (a metric undefined there) is skipped; a NaN at ``t = 0`` or ``t = 1``
raises, since every definition needs both endpoint values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mcu_lightning.core.direction import NAMED, is_direction, ranking_key, target
from mcu_lightning.core.errors import InputError


def _prepare(ts: Sequence[float], values: Sequence[float], higher_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(t, m)`` arrays in lower-is-better orientation, interior NaNs dropped."""
    t = np.asarray(ts, dtype=np.float64)
    m = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or t.shape != m.shape:
        raise InputError(f"ts and values must be 1-D of equal length, got {t.shape} and {m.shape}")
    if t.size < 2 or t[0] != 0.0 or t[-1] != 1.0:
        raise InputError(f"ts must start at 0 and end at 1 (both endpoints evaluated), got {t.tolist()}")
    if np.any(np.diff(t) <= 0):
        raise InputError(f"ts must be strictly increasing, got {t.tolist()}")
    if np.isnan(m[0]) or np.isnan(m[-1]):
        raise InputError(f"the metric is NaN at an endpoint (m(0)={m[0]}, m(1)={m[-1]}); a barrier needs both")
    keep = ~np.isnan(m)
    t, m = t[keep], m[keep]
    return t, (-m if higher_is_better else m)


def _argmax(t: np.ndarray, excess: np.ndarray) -> tuple[float, float]:
    i = int(np.argmax(excess))  # first maximum on ties
    return float(excess[i]), float(t[i])


def barrier_vs_line(
    ts: Sequence[float], values: Sequence[float], higher_is_better: bool = False
) -> tuple[float, float]:
    """``max_i [m(t_i) - ((1 - t_i) m(0) + t_i m(1))]`` and its ``t``: the excess over the straight line."""
    t, m = _prepare(ts, values, higher_is_better)
    return _argmax(t, m - ((1.0 - t) * m[0] + t * m[-1]))


def barrier_vs_max_end(
    ts: Sequence[float], values: Sequence[float], higher_is_better: bool = False
) -> tuple[float, float]:
    """``max_i m(t_i) - max(m(0), m(1))`` and its ``t``: the excess over the worse endpoint."""
    t, m = _prepare(ts, values, higher_is_better)
    return _argmax(t, m - max(m[0], m[-1]))


def barrier_vs_mean_end(
    ts: Sequence[float], values: Sequence[float], higher_is_better: bool = False
) -> tuple[float, float]:
    """``max_i m(t_i) - (m(0) + m(1)) / 2`` and its ``t``: the excess over the endpoints' mean."""
    t, m = _prepare(ts, values, higher_is_better)
    return _argmax(t, m - 0.5 * (m[0] + m[-1]))


@dataclass(frozen=True)
class CurveSummary:
    """One metric along one curve. Barriers are "how much worse" (positive = a barrier); values, the best interior
    and best endpoint are in the metric's own orientation; ``margin`` is how much better the best interior point is
    than the best endpoint in ``direction`` (positive when ``interior_beats_endpoints``; NaN without interior points,
    and for ``direction="none"``, which has only its endpoint values).
    """

    barrier_vs_line: float
    t_barrier_vs_line: float
    barrier_vs_max_end: float
    t_barrier_vs_max_end: float
    barrier_vs_mean_end: float
    t_barrier_vs_mean_end: float
    value_t0: float
    value_t1: float
    best_interior: float
    t_best_interior: float
    best_endpoint: float
    interior_beats_endpoints: bool
    margin: float
    direction: str

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)


DIRECTIONS = NAMED


def as_direction(direction: str | bool | None) -> str:
    """A direction name; ``True``/``False`` (a ``higher_is_better`` flag) read as ``higher``/``lower``, ``None`` (no
    better side) as ``none``."""
    if direction is None:
        return "none"
    if isinstance(direction, bool):
        return "higher" if direction else "lower"
    if not is_direction(direction):
        raise InputError(
            f"direction must be one of {DIRECTIONS}, 'toward <x>' (or a bool higher_is_better), got {direction!r}"
        )
    return direction


def best_interior(ts: Sequence[float], values: Sequence[float], direction: str) -> tuple[float, float] | None:
    """``(t, value)`` of the best interior point of a test grid (every ``t`` but the first and the last, ``t = 0``
    and ``t = 1``) by ``direction`` (``higher``, ``lower``, ``zero``: closest to 0, ``toward <x>``: closest to x),
    NaN values skipped, the first on ties; ``None`` when no interior value is left. The curve summary's
    ``best_interior`` and ``export_best`` both read it."""
    keyed = [(ranking_key(direction, values[i]), i) for i in range(1, len(values) - 1) if not math.isnan(values[i])]
    if not keyed:
        return None
    i = min(keyed)[1]
    return float(ts[i]), float(values[i])


def summarize_series(
    ts: Sequence[float], values: Sequence[float], direction: str | bool | None = "lower"
) -> CurveSummary:
    """Barriers, endpoint values and the best interior point of a metric series ``values[i] = m(ts[i])``, read in
    ``direction`` (``higher``, ``lower``, ``zero``: closer to 0 is better, ``toward <x>``: closer to x is better,
    ``none``: not ranked)."""
    direction = as_direction(direction)
    raw_t, raw = _prepare(ts, values, higher_is_better=False)  # validated, interior NaNs dropped, own orientation
    if direction == "none":
        unranked = dict.fromkeys(CurveSummary.__dataclass_fields__, math.nan)
        unranked.update(value_t0=float(raw[0]), value_t1=float(raw[-1]), interior_beats_endpoints=False)
        return CurveSummary(**{**unranked, "direction": direction})
    centre = target(direction)
    oriented = raw if centre is None else np.abs(raw - centre)
    higher = direction == "higher"
    line = barrier_vs_line(raw_t, oriented, higher)
    max_end = barrier_vs_max_end(raw_t, oriented, higher)
    mean_end = barrier_vs_mean_end(raw_t, oriented, higher)
    m = _prepare(raw_t, oriented, higher)[1]  # lower is better
    best_end = int(np.argmin([m[0], m[-1]])) * (m.size - 1)
    found = best_interior(raw_t.tolist(), raw.tolist(), direction)
    if found is not None:
        t_best, value = found
        best, margin = value, float(m[best_end] - ranking_key(direction, value))
    else:
        best, t_best, margin = math.nan, math.nan, math.nan
    return CurveSummary(
        barrier_vs_line=line[0],
        t_barrier_vs_line=line[1],
        barrier_vs_max_end=max_end[0],
        t_barrier_vs_max_end=max_end[1],
        barrier_vs_mean_end=mean_end[0],
        t_barrier_vs_mean_end=mean_end[1],
        value_t0=float(raw[0]),
        value_t1=float(raw[-1]),
        best_interior=float(best),
        t_best_interior=t_best,
        best_endpoint=float(raw[best_end]),
        interior_beats_endpoints=bool(margin > 0),
        margin=margin,
        direction=direction,
    )
