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
from mcu_lightning.curves.barrier import summarize_series

CURVE_METRICS_CSV = "curve_metrics.csv"
CURVE_FIGURE = "curve_metrics.png"
BARRIER_JSON = "barrier_summary.json"
#: Columns of robustness probes (``probe/<name>/<metric>``), present only at the t where the probe ran.
PROBED_PREFIX = "probe/"
_RECOVERY = "_recovery"


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
    higher_is_better: Callable[[str], bool | None],
    path_length: float | None = None,
) -> dict[str, Any]:
    """Per metric: the three barriers with the t of their peak, and the best interior point vs the endpoints.

    Probe columns (``probe/...``, computed at every k-th t) are summarised over the t where they were computed; a
    column whose direction is ``None`` (e.g. a distance) has no barrier.
    """
    summary: dict[str, Any] = {"path_length": path_length, "metrics": {}}
    for name in columns:
        if name == "t":
            continue
        kept = [row for row in rows if not (name.startswith(PROBED_PREFIX) and math.isnan(row[name]))]
        ts, values = [row["t"] for row in kept], [row[name] for row in kept]
        if len(kept) < 2 or any(math.isnan(v) for v in values):
            summary["metrics"][name] = {"missing": "NaN at some t (the metric could not be computed)"}
            continue
        direction = higher_is_better(name)
        if direction is None:
            summary["metrics"][name] = {"missing": "no better direction (no barrier)"}
            continue
        summary["metrics"][name] = summarize_series(ts, values, higher_is_better=direction).as_dict()
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
        panel = _panel_of(name)
        if panel is not None:
            groups.setdefault(panel, []).append(name)
    rank = {key: i for i, key in enumerate(PANEL_ORDER)}
    return sorted(groups.items(), key=lambda item: rank.get(item[0], len(rank)))


#: Probe metrics drawn (as their recovery, after - before); a probe's other numbers (distances, curvature) all are.
PROBE_FIGURE_METRICS = ("prob", "rouge", "acc", "truth_ratio", "model_utility", "forget_quality")


def _probe_panel(name: str) -> tuple[str, str] | None:
    """Panel and line of a probe column ``probe/<name>/[split/]metric``: a panel per probe and metric (recoveries
    of the suite metrics in :data:`PROBE_FIGURE_METRICS` only), a line per split; ``None``: not drawn."""
    _, probe, rest = name.split("/", 2)
    split, _, metric = rest.rpartition("/")
    if metric.endswith(_RECOVERY):
        metric = metric[: -len(_RECOVERY)]
        if metric not in PROBE_FIGURE_METRICS:
            return None
        return f"{probe} recovery: {metric}", split or metric
    kind = metric.split("_", 1)[0] if not split else metric  # l2_base, l2_end0 -> one "l2" panel
    return f"{probe}: {kind}", split or metric


def _panel_of(name: str) -> str | None:
    if name.startswith(PROBED_PREFIX):
        probe = _probe_panel(name)
        return probe[0] if probe is not None else None
    if "/" in name:
        return name.rsplit("/", 1)[1]
    if name.startswith("mia_") and name.endswith("_auc"):
        return "MIA AUC"
    if name.startswith("privleak"):
        return "privleak"
    return name


def _line_label(name: str, panel: str) -> str:
    if name.startswith(PROBED_PREFIX):
        probe = _probe_panel(name)
        return probe[1] if probe is not None else name
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

    recovered = {c[: -len(_RECOVERY)] for c in columns if c.startswith(PROBED_PREFIX) and c.endswith(_RECOVERY)}
    groups = panels([c for c in columns if c != "t" and c not in recovered])  # a probe's recovery says it all
    ncols = min(4, max(1, len(groups)))
    nrows = max(1, math.ceil(len(groups) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False)
    for ax, (panel, names) in zip(axes.flat, groups, strict=False):
        for name in names:
            points = [(row["t"], row[name]) for row in rows if not math.isnan(row[name])]  # probes: every k-th t
            if not points:
                continue
            xs, values = [p[0] for p in points], [p[1] for p in points]
            marker = "." if len(points) < len(rows) else None
            (line,) = ax.plot(xs, values, linewidth=1.5, marker=marker, label=_line_label(name, panel))
            ax.scatter([xs[0], xs[-1]], [values[0], values[-1]], color=line.get_color(), zorder=3, s=14)
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
    higher_is_better: Callable[[str], bool | None],
    path_length: float | None = None,
    logger: Any = None,
) -> dict[str, Any]:
    """Write ``curve_metrics.csv``, ``curve_metrics.png`` and ``barrier_summary.json`` under ``out_dir``."""
    out_dir = Path(out_dir)
    columns, rows = curve_table(ts, results)
    write_csv(out_dir / CURVE_METRICS_CSV, columns, rows)
    summary = barrier_summaries(columns, rows, higher_is_better, path_length)
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
