"""One curve run with several seeds, read together: the mean curve with its band, and every barrier number as a mean
with its confidence interval over seeds (:func:`~mcu_lightning.metrics.intervals.mean_interval`, Student t).

:func:`aggregate_seeds` takes the per-seed ``curve_metrics.csv`` tables (``read_csv``) of one curve and the metrics'
directions; each seed's barriers are computed as its own barrier summary computes them (:func:`barrier_summaries`),
then averaged across seeds. A single seed is a group of one: means without intervals, said so.

Decisions read the whole interval, never one run:

* barrier-free on a metric: the upper end of the barrier's interval is below :data:`BARRIER_TOLERANCE`;
  a barrier: its lower end is above it; otherwise undecided at this number of seeds;
* an interior point beats both endpoints: the lower end of the margin's interval (best interior minus best endpoint,
  in the metric's direction) is above 0.

The barrier read is ``barrier_vs_max_end`` (how much worse the path gets than its worse endpoint,
:mod:`mcu_lightning.curves.barrier`), in the metric's own units: the grid report's default definition
(:mod:`mcu_lightning.report.grid`), so a study's summary and a grid's table decide alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcu_lightning.metrics.intervals import Interval, mean_interval
from mcu_lightning.report.curve import barrier_summaries

#: The barrier a decision reads (a key of the barrier summary) ...
BARRIER = "barrier_vs_max_end"
#: ... and the tolerance, in the metric's units, its interval must stay below to call the path barrier-free.
BARRIER_TOLERANCE = 0.02
#: The confidence level of every interval in the report.
LEVEL = 0.95


def barrier_free(barrier: Interval, tolerance: float = BARRIER_TOLERANCE) -> bool | None:
    """True: the barrier's interval lies below ``tolerance``; False: above it; None: undecided (or one seed)."""
    if barrier.below(tolerance):
        return True
    if barrier.above(tolerance):
        return False
    return None


@dataclass
class MetricOverSeeds:
    """One metric of one curve over seeds: each summary number as an :class:`Interval` (mean and CI)."""

    direction: str
    barrier: Interval
    t_barrier: Interval
    margin: Interval
    best_interior: Interval
    t_best_interior: Interval
    value_t0: Interval
    value_t1: Interval
    beats: int  # seeds in which an interior point beats both endpoints
    n: int

    def barrier_free(self, tolerance: float = BARRIER_TOLERANCE) -> bool | None:
        """True: the barrier's interval lies below ``tolerance``; False: above it; None: undecided (or one seed)."""
        return barrier_free(self.barrier, tolerance)

    def beats_both(self) -> bool | None:
        """True: the margin's interval lies above 0; False: below 0 (or at most 0); None: undecided (or one seed)."""
        if self.margin.above(0.0):
            return True
        if self.margin.has_interval and self.margin.high <= 0.0:
            return False
        return None


@dataclass
class CurveOverSeeds:
    """A curve over seeds: its t grid, the band of every column per t, the summary of every ranked metric."""

    seeds: list[int]
    ts: list[float]
    columns: list[str]
    band: dict[str, list[Interval]] = field(default_factory=dict)
    metrics: dict[str, MetricOverSeeds] = field(default_factory=dict)

    def mean_rows(self) -> list[dict[str, float]]:
        """One row per t: the mean of every column over seeds (t itself as it is)."""
        return [{"t": t, **{name: band[i].mean for name, band in self.band.items()}} for i, t in enumerate(self.ts)]

    def band_rows(self) -> tuple[list[str], list[dict[str, float]]]:
        """Columns and rows of the aggregated CSV: per column its ``mean``, ``low``, ``high``, plus ``n`` seeds."""
        columns = ["t"] + [f"{name}{suffix}" for name in self.band for suffix in ("", "_low", "_high")]
        rows = []
        for i, t in enumerate(self.ts):
            row = {"t": t}
            for name, band in self.band.items():
                row.update({name: band[i].mean, f"{name}_low": band[i].low, f"{name}_high": band[i].high})
            rows.append(row)
        return columns, rows


def ranked(entry: Any) -> bool:
    """Whether a metric's entry of a barrier summary counts: computed (not ``missing``) and ranked (a direction)."""
    return isinstance(entry, dict) and "missing" not in entry and entry.get("direction", "none") != "none"


def metric_over_seeds(
    entries: Sequence[Mapping[str, Any]], level: float = LEVEL, barrier: str = BARRIER
) -> MetricOverSeeds:
    """One metric's barrier-summary entries, one per seed (each :func:`ranked`), as means with their intervals;
    ``barrier``: the barrier read (a key of the summary). No entries: every interval empty, direction ``none``."""

    def over(key: str) -> Interval:
        return mean_interval((float(e[key]) for e in entries), level)

    return MetricOverSeeds(
        direction=entries[0]["direction"] if entries else "none",
        barrier=over(barrier),
        t_barrier=over(f"t_{barrier}"),
        margin=over("margin"),
        best_interior=over("best_interior"),
        t_best_interior=over("t_best_interior"),
        value_t0=over("value_t0"),
        value_t1=over("value_t1"),
        beats=sum(bool(e["interior_beats_endpoints"]) for e in entries),
        n=len(entries),
    )


def band_over_seeds(series: Sequence[Sequence[Mapping[str, float]]], name: str, level: float = LEVEL) -> list[Interval]:
    """Per t, the mean and interval of column ``name`` over the seeds' rows (``series``: one row list per seed, every
    seed on the first one's t grid)."""
    return [mean_interval((rows[i][name] for rows in series), level) for i in range(len(series[0]))]


def _direction(directions: Mapping[str, str]):
    def direction(name: str) -> str:
        return directions[name]  # KeyError: summarised as "none" (reported, not ranked)

    return direction


def aggregate_seeds(
    tables: Mapping[int, tuple[Sequence[str], Sequence[Mapping[str, float]]]],
    directions: Mapping[str, str],
    level: float = LEVEL,
) -> CurveOverSeeds:
    """Aggregate one curve's per-seed ``(columns, rows)`` tables (seed -> table); ``directions``: metric -> direction
    (``higher``/``lower``/``zero``/``none``), as the suite stated it. Every seed must share the t grid."""
    if not tables:
        raise ValueError("no per-seed tables to aggregate")
    seeds = list(tables)
    grids = {seed: [row["t"] for row in rows] for seed, (_, rows) in tables.items()}
    ts = grids[seeds[0]]
    for seed, grid in grids.items():
        if grid != ts:
            raise ValueError(f"seed {seed} was tested on t {grid}, seed {seeds[0]} on {ts}; give every seed one grid")
    columns = [c for c in tables[seeds[0]][0] if c != "t" and all(c in cols for cols, _ in tables.values())]
    out = CurveOverSeeds(seeds, list(ts), columns)
    for name in columns:
        out.band[name] = band_over_seeds([rows for _, rows in tables.values()], name, level)
    summaries = [barrier_summaries(cols, rows, _direction(directions))["metrics"] for cols, rows in tables.values()]
    for name in columns:
        entries = [s.get(name, {}) for s in summaries]
        if all(ranked(e) for e in entries):
            out.metrics[name] = metric_over_seeds(entries, level)
    return out


def num(value: float) -> str:
    """A number as the report prints it: three significant digits, ``n/a`` when not a number."""
    return "n/a" if not math.isfinite(value) else f"{value:.3g}"


def interval_text(interval: Interval) -> str:
    """``mean [low, high]``, or just the mean without an interval (one seed)."""
    if not interval.has_interval:
        return num(interval.mean)
    return f"{num(interval.mean)} [{num(interval.low)}, {num(interval.high)}]"


def interval_note(curve: CurveOverSeeds, level: float = LEVEL) -> str:
    """What the intervals are, said once under each table that has them."""
    n = len(curve.seeds)
    if n < 2:
        return f"One seed ({curve.seeds[0]}): single values, no interval."
    return (
        f"Mean over {n} seeds ({', '.join(map(str, curve.seeds))}) with its {level:.0%} confidence interval "
        f"[low, high] (Student t, {n - 1} degrees of freedom). Barrier = {BARRIER} in the metric's units; "
        f"barrier-free when the interval's upper end is below {BARRIER_TOLERANCE}, a barrier when its lower end is "
        "above it, else undecided; an interior point beats both endpoints when the margin's interval is above 0."
    )


def _verdict(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "undecided"}[value]


def seed_table(curve: CurveOverSeeds, metrics: Sequence[str]) -> list[str]:
    """The aggregated barrier rows of ``metrics`` (those ranked), each number a mean with its interval."""
    lines = [
        f"| metric | t=0 | t=1 | barrier (t) | barrier-free (< {BARRIER_TOLERANCE}) | best interior (t) "
        "| margin over best endpoint | interior beats both (seeds) |",
        "| --- " * 8 + "|",
    ]
    for name in metrics:
        m = curve.metrics.get(name)
        if m is None:
            continue
        lines.append(
            f"| {name} | {interval_text(m.value_t0)} | {interval_text(m.value_t1)} "
            f"| {interval_text(m.barrier)} ({num(m.t_barrier.mean)}) | {_verdict(m.barrier_free())} "
            f"| {interval_text(m.best_interior)} ({num(m.t_best_interior.mean)}) | {interval_text(m.margin)} "
            f"| {_verdict(m.beats_both())} ({m.beats} of {m.n}) |"
        )
    return lines


def plot_seed_curve(curve: CurveOverSeeds, title: str = "", directions: Mapping[str, str] | None = None) -> Any:
    """Every metric against t as the mean over seeds, with its confidence band (``plot_curve`` with ``bands``)."""
    from mcu_lightning.report.curve import plot_curve

    bands = {name: ([i.low for i in band], [i.high for i in band]) for name, band in curve.band.items()}
    return plot_curve(["t", *curve.columns], curve.mean_rows(), title=title, directions=directions, bands=bands)
