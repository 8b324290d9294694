"""Curve reports: the metric table along t, a figure of every metric against t, and the barrier summary.

Written by ``CurveModule.test`` and rebuilt by ``mcu report`` from the saved CSV; all files atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mcu_lightning.atomic import atomic_write
from mcu_lightning.curves.barrier import as_direction, summarize_series

CURVE_METRICS_CSV = "curve_metrics.csv"
CURVE_FIGURE = "curve_metrics.png"
BARRIER_JSON = "barrier_summary.json"


def curve_table(ts: Sequence[float], results: Sequence[Any]) -> tuple[list[str], list[dict[str, float]]]:
    """Columns and rows (one per t) from the suite results at each t."""
    names = sorted({name for result in results for name in result.aggregates})
    rows = [
        {"t": float(t), **{name: float(result.aggregates.get(name, math.nan)) for name in names}}
        for t, result in zip(ts, results, strict=True)
    ]
    return ["t", *names], rows


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    for row in rows:
        writer.writerow({key: f"{row[key]:.8g}" for key in columns})
    atomic_write(path, buffer.getvalue().encode())


def read_csv(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [{key: float(value) for key, value in row.items()} for row in reader]
        return list(reader.fieldnames or []), rows


def barrier_summaries(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, float]],
    direction: Callable[[str], str | bool | None],
    path_length: float | None = None,
) -> dict[str, Any]:
    """Per metric: the three barriers with the t of their peak, and the best interior point vs the endpoints, read
    in the metric's ``direction`` (a suite's ``direction``: higher/lower/zero/none; a bool is ``higher_is_better``,
    ``None`` is none).
    A name the callable does not know (``KeyError``) is summarised as ``none``: reported, not ranked."""
    ts = [row["t"] for row in rows]
    summary: dict[str, Any] = {"path_length": path_length, "metrics": {}}
    for name in columns:
        if name == "t":
            continue
        values = [row[name] for row in rows]
        try:
            way = as_direction(direction(name))
        except KeyError:
            way = "none"
        if any(math.isnan(v) for v in values):
            summary["metrics"][name] = {"missing": "NaN at some t (the metric could not be computed)", "direction": way}
            continue
        summary["metrics"][name] = summarize_series(ts, values, direction=way).as_dict()
    return summary


#: Panels first in the figure, in this order (TOFU's headline metrics); the others follow as first seen.
PANEL_ORDER = ("forget_quality", "model_utility", "prob", "rouge", "truth_ratio", "loss", "acc")


def panels(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Metric names grouped into figure panels: TOFU's headline metrics first, then in first-seen order.

    ``split/metric`` names share one panel per metric, a line per split (``forget/prob`` next to ``retain/prob``, as
    the MCU and TOFU figures compare them); the MIA AUCs ``mia_<attack>_auc`` share one, and so do the privleak
    variants ``privleak[_<attack>]``; any other name has its own.
    """
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_panel_of(name), []).append(name)
    rank = {key: i for i, key in enumerate(PANEL_ORDER)}
    return sorted(groups.items(), key=lambda item: rank.get(item[0], len(rank)))


def _panel_of(name: str) -> str:
    if "/" in name:
        return name.rsplit("/", 1)[1]
    if name.startswith("mia_") and name.endswith("_auc"):
        return "MIA AUC"
    if name.startswith("privleak"):
        return "privleak"
    return name


def _line_label(name: str, panel: str) -> str:
    if "/" in name:
        return name.rsplit("/", 1)[0]
    if panel == "MIA AUC":
        return name[len("mia_") : -len("_auc")]
    if panel == "privleak":
        return name[len("privleak_") :] if name != "privleak" else "min_k"
    return name


def plot_curve(columns: Sequence[str], rows: Sequence[Mapping[str, float]], title: str = "") -> Any:
    """A figure of every metric against t, one panel per metric (a line per split, see :func:`panels`), the
    endpoints marked. Forget quality (a p-value) is drawn on a log scale."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = panels([c for c in columns if c != "t"])
    ncols = min(4, max(1, len(groups)))
    nrows = max(1, math.ceil(len(groups) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False)
    ts = [row["t"] for row in rows]
    for ax, (panel, names) in zip(axes.flat, groups, strict=False):
        for name in names:
            values = [row[name] for row in rows]
            (line,) = ax.plot(ts, values, linewidth=1.5, label=_line_label(name, panel))
            ax.scatter([ts[0], ts[-1]], [values[0], values[-1]], color=line.get_color(), zorder=3, s=14)
        if panel == "forget_quality" and all(row[panel] > 0 for row in rows):
            ax.set_yscale("log")
        if len(names) > 1:
            ax.legend(fontsize=5, frameon=False)
        ax.set_title(panel, fontsize=8)
        ax.set_xlabel("t", fontsize=7)
        ax.tick_params(which="both", labelsize=6)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    # fixed margins: tight_layout costs seconds on a figure of dozens of panels
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.9 if title else 0.95, wspace=0.35, hspace=0.75)
    return fig


def render_png(fig: Any, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def save_figure(fig: Any, path: Path) -> None:
    atomic_write(path, render_png(fig))


def write_curve_report(
    ts: Sequence[float],
    results: Sequence[Any],
    out_dir: Path,
    direction: Callable[[str], str | bool | None],
    path_length: float | None = None,
    logger: Any = None,
) -> dict[str, Any]:
    """Write ``curve_metrics.csv``, ``curve_metrics.png`` and ``barrier_summary.json`` under ``out_dir``."""
    out_dir = Path(out_dir)
    columns, rows = curve_table(ts, results)
    write_csv(out_dir / CURVE_METRICS_CSV, columns, rows)
    summary = barrier_summaries(columns, rows, direction, path_length)
    atomic_write(out_dir / BARRIER_JSON, json.dumps(summary, indent=2, allow_nan=True).encode())
    png = render_png(plot_curve(columns, rows))  # drawn once: the file and TensorBoard share the pixels
    atomic_write(out_dir / CURVE_FIGURE, png)
    experiment = getattr(logger, "experiment", None)
    if experiment is not None and hasattr(experiment, "add_image"):
        import numpy as np
        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        experiment.add_image("curve/metrics_vs_t", image, dataformats="HWC")
    return summary
