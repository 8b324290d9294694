"""The rich tables ``mcu test`` prints after a test: a model's main metrics, a curve's barriers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def metrics_table(aggregates: dict[str, float], names: Sequence[str], title: str = "test metrics") -> Any:
    """A rich table of the main metrics ``aggregates`` has (in ``names`` order), one row each."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in names:
        value = aggregates.get(name)
        if isinstance(value, (int, float)):
            table.add_row(name, "n/a" if math.isnan(value) else f"{value:.4g}")
    return table


def barrier_table(summary: dict[str, Any], names: Sequence[str], title: str = "barriers along the curve") -> Any:
    """A rich table of a curve's barrier summary (``barrier_summary.json``) for the main metrics it has."""
    from rich.table import Table

    def fmt(value: Any) -> str:
        return "n/a" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.4g}"

    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for column in ("metric", "t=0", "t=1", "vs line", "at t", "best interior", "beats both ends"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    metrics = summary.get("metrics", {})
    for name in names:
        row = metrics.get(name)
        if row is None:
            continue
        table.add_row(
            name,
            fmt(row.get("value_t0")),
            fmt(row.get("value_t1")),
            fmt(row.get("barrier_vs_line")),
            fmt(row.get("t_barrier_vs_line")),
            fmt(row.get("best_interior")),
            "yes" if row.get("interior_beats_endpoints") else "no",
        )
    return table
