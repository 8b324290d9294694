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

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.names import BARRIER_JSON, CURVE_METRICS_CSV, PROBE_PREFIX, RECOVERY_SUFFIX
from mcu_lightning.curves.barrier import as_direction, summarize_series

CURVE_FIGURE = "curve_metrics.png"  # the headline figure: the metrics a paper shows
CURVE_APPENDIX = "curve_metrics_all.png"  # the appendix sheet: every metric and probe
TENSORBOARD_WIDTH = 1600  # pixels of the figure's copy in TensorBoard


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
    A name the callable does not know (``KeyError``) is summarised as ``none``: reported, not ranked. Probe columns
    (``probe/...``, computed at every k-th t) are summarised over the t where they were computed."""
    summary: dict[str, Any] = {"path_length": path_length, "metrics": {}}
    for name in columns:
        if name == "t":
            continue
        kept = [row for row in rows if not (name.startswith(PROBE_PREFIX) and math.isnan(row[name]))]
        ts, values = [row["t"] for row in kept], [row[name] for row in kept]
        try:
            way = as_direction(direction(name))
        except KeyError:
            way = "none"
        both_ends = len(kept) >= 2 and kept[0]["t"] == rows[0]["t"] and kept[-1]["t"] == rows[-1]["t"]
        if not both_ends or any(math.isnan(v) for v in values):
            summary["metrics"][name] = {"missing": "NaN at some t (the metric could not be computed)", "direction": way}
            continue
        summary["metrics"][name] = summarize_series(ts, values, direction=way).as_dict()
    return summary


def summary_directions(summary: Mapping[str, Any] | None) -> dict[str, str]:
    """The direction of each metric as a barrier summary records it (what the suite stated)."""
    metrics = (summary or {}).get("metrics", {})
    return {name: entry["direction"] for name, entry in metrics.items() if isinstance(entry.get("direction"), str)}


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
    if metric.endswith(RECOVERY_SUFFIX):
        metric = metric[: -len(RECOVERY_SUFFIX)]
        if metric not in PROBE_FIGURE_METRICS:
            return None
        return f"{probe} recovery: {metric}", split or metric
    if not split and "_" in metric:  # l2_base, l2_end0 -> one "l2" panel, a line per reference (base, end0)
        kind, reference = metric.split("_", 1)
        return f"{probe}: {kind}", reference
    return f"{probe}: {metric}", split or metric


def _panel_of(name: str) -> str | None:
    if name.startswith(PROBE_PREFIX):
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
    if name.startswith(PROBE_PREFIX):
        probe = _probe_panel(name)
        return probe[1] if probe is not None else name
    if "/" in name:
        return name.rsplit("/", 1)[0]
    if panel == "MIA AUC":
        return name[len("mia_") : -len("_auc")] or "mia"  # mia_auc: a suite's single attack
    if panel == "privleak":
        return name[len("privleak_") :] if name != "privleak" else "min_k"
    return name


def _grid(count: int, ncols_max: int = 4) -> tuple[int, int]:
    ncols = min(ncols_max, max(1, count))
    return max(1, math.ceil(count / ncols)), ncols


def panel_figure(count: int, title: str, legend_rows: int) -> tuple[Any, Any]:
    """A figure of ``count`` panels with margins fixed in inches (no layout engine: it costs seconds on dozens of
    panels), room for a y label and tick labels left of each panel, a title above and a legend below."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from mcu_lightning.report.figure_style import PANEL_INCHES, drawable

    nrows, ncols = _grid(count)
    width, height = PANEL_INCHES
    left, right, gap_x = 0.75, 0.2, 0.85  # inches: y label + ticks, edge, y label + ticks of the next panel
    top, bottom, gap_y = (0.75 if title else 0.35), 0.55 + 0.25 * legend_rows, 0.75  # title; x label + legend
    fig_w = left + right + ncols * width + (ncols - 1) * gap_x
    fig_h = top + bottom + nrows * height + (nrows - 1) * gap_y
    fig, axes = plt.subplots(nrows, ncols, figsize=(fig_w, fig_h), squeeze=False)
    fig.subplots_adjust(
        left=left / fig_w,
        right=1 - right / fig_w,
        bottom=bottom / fig_h,
        top=1 - top / fig_h,
        wspace=gap_x / width,
        hspace=gap_y / height,
    )
    if title:
        text, families = drawable(title)  # a CJK name: a font that has it, or its code points (no missing glyphs)
        fig.suptitle(text, fontsize=11, y=1 - 0.15 / fig_h, va="top", fontfamily=families)
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    return fig, axes


def figure_legend(fig: Any, handles: dict[str, Any], ncol_max: int = 8) -> None:
    """One legend for the whole figure, under the panels (colours are fixed per label, so one serves all)."""
    from mcu_lightning.report.figure_style import LEGEND_FONT, drawable

    if handles:
        labels = [drawable(label) for label in handles]  # curve names in the study figure: any script
        families = list(dict.fromkeys(family for _, fonts in labels for family in fonts))
        fig.legend(
            list(handles.values()),
            [text for text, _ in labels],
            loc="lower center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(ncol_max, len(handles)),
            prop={"family": families, "size": LEGEND_FONT},
            frameon=False,
        )


def legend_rows(count: int, ncol_max: int = 8) -> int:
    return math.ceil(count / ncol_max) if count else 0


def plot_curve(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, float]],
    title: str = "",
    directions: Mapping[str, str] | None = None,
    only: Callable[[list[tuple[str, list[str]]]], list[tuple[str, list[str]]]] | None = None,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Any:
    """A figure of every metric against t, one panel per metric (a line per split, see :func:`panels`), the
    endpoints marked, each y label naming the better direction (``figure_style``), one legend for all panels.
    Forget quality (a p-value) is drawn on a log scale. ``only``: the panels to draw (:func:`headline_panels`).
    ``bands``: per column the ``(low, high)`` per row, shaded around its line (the confidence band of a mean over
    seeds, :mod:`mcu_lightning.report.seeds`)."""
    from matplotlib.lines import Line2D

    from mcu_lightning.report.figure_style import LABEL_FONT, color, direction_label, linestyle

    recovered = {
        c[: -len(RECOVERY_SUFFIX)] for c in columns if c.startswith(PROBE_PREFIX) and c.endswith(RECOVERY_SUFFIX)
    }
    groups = panels([c for c in columns if c != "t" and c not in recovered])  # a probe's recovery says it all
    if only is not None:
        groups = only(groups)
    labels = {name: _line_label(name, panel) for panel, names in groups for name in names}
    keyed = [name for panel, names in groups for name in names if _keyed(name, panel)]
    handles: dict[str, Any] = {}
    for name in keyed:
        style = {"color": color(labels[name]), "linestyle": linestyle(labels[name])}
        handles.setdefault(labels[name], Line2D([], [], linewidth=1.8, **style))
    handles["endpoints"] = Line2D([], [], color="#444444", marker="o", linestyle="none", markersize=4)
    fig, axes = panel_figure(len(groups), title, legend_rows(len(handles)))
    for ax, (panel, names) in zip(axes.flat, groups, strict=False):
        for name in names:
            points = [(row["t"], row[name]) for row in rows if not math.isnan(row[name])]  # probes: every k-th t
            if not points:
                continue
            xs, values = [p[0] for p in points], [p[1] for p in points]
            marker = "." if len(points) < len(rows) else None
            line_color, line_style = color(labels[name]), linestyle(labels[name])  # one colour a series, everywhere
            ax.plot(
                xs, values, linewidth=1.5, marker=marker, color=line_color, linestyle=line_style, label=labels[name]
            )
            ax.scatter([xs[0], xs[-1]], [values[0], values[-1]], color=line_color, zorder=3, s=14)
            if bands is not None and name in bands:
                spans = [(r["t"], lo, hi) for r, lo, hi in zip(rows, *bands[name], strict=True) if math.isfinite(lo)]
                if spans:
                    band_t, low, high = zip(*spans, strict=True)
                    ax.fill_between(band_t, low, high, color=line_color, alpha=0.2, linewidth=0)
        if panel == "forget_quality" and all(row[panel] > 0 for row in rows):
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("t", fontsize=LABEL_FONT)
        ax.set_ylabel(direction_label(panel, names, labels, directions), fontsize=LABEL_FONT)
        ax.tick_params(which="both", labelsize=LABEL_FONT - 1)
    figure_legend(fig, handles)
    return fig


#: The panels of a curve's headline figure (what a paper shows), those present in this order; everything is in the
#: appendix sheet.
HEADLINE_PANELS = ("forget_quality", "model_utility", "prob", "rouge", "acc", "zrf", "unlearn_overall")


def headline_panels(groups: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """The headline figure's panels: :data:`HEADLINE_PANELS` present (the first four panels if fewer than two are)."""
    by_name = dict(groups)
    chosen = [(name, by_name[name]) for name in HEADLINE_PANELS if name in by_name]
    return chosen if len(chosen) >= 2 else groups[:4]


def _keyed(name: str, panel: str) -> bool:
    """Whether a line is one of several splits or attacks (coloured by it, in the legend), not a lone metric."""
    return "/" in name or panel in ("MIA AUC", "privleak")


def render_png(fig: Any, dpi: int | None = None, vector: Path | None = None) -> bytes:
    """The figure as PNG bytes at print resolution (``figure_style.PRINT_DPI``), also saved as a vector file at
    ``vector`` (``.pdf`` or ``.svg``) when given; the figure is closed."""
    import matplotlib.pyplot as plt

    from mcu_lightning.report.figure_style import PRINT_DPI

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or PRINT_DPI)
    if vector is not None:
        vector_buffer = io.BytesIO()
        fig.savefig(vector_buffer, format=vector.suffix.lstrip("."))
        atomic_write(vector, vector_buffer.getvalue())
    plt.close(fig)
    return buffer.getvalue()


VECTOR_FORMATS = ("pdf", "svg")


def save_figure(fig: Any, path: Path, vector: str | None = None) -> None:
    """Write the figure as PNG at ``path`` and, with ``vector`` (``pdf`` or ``svg``), a vector copy beside it."""
    if vector is not None and vector not in VECTOR_FORMATS:
        raise ValueError(f"vector={vector!r}: choose one of {', '.join(VECTOR_FORMATS)} (or none for PNG only)")
    atomic_write(path, render_png(fig, vector=path.with_suffix(f".{vector}") if vector else None))


def write_curve_report(
    ts: Sequence[float],
    results: Sequence[Any],
    out_dir: Path,
    direction: Callable[[str], str | bool | None],
    path_length: float | None = None,
    logger: Any = None,
    title: str = "",
) -> dict[str, Any]:
    """Write ``curve_metrics.csv``, ``curve_metrics.png`` (the headline figure), ``curve_metrics_all.png`` (every
    metric) and ``barrier_summary.json`` under ``out_dir``
    (``title``: the figure's, e.g. ``figure_style.curve_title``)."""
    out_dir = Path(out_dir)
    columns, rows = curve_table(ts, results)
    write_csv(out_dir / CURVE_METRICS_CSV, columns, rows)
    summary = barrier_summaries(columns, rows, direction, path_length)
    atomic_write(out_dir / BARRIER_JSON, json.dumps(summary, indent=2, allow_nan=True).encode())
    directions = summary_directions(summary)
    png = render_png(plot_curve(columns, rows, title=title, directions=directions, only=headline_panels))
    atomic_write(out_dir / CURVE_FIGURE, png)  # the file and TensorBoard share it
    atomic_write(out_dir / CURVE_APPENDIX, render_png(plot_curve(columns, rows, title=title, directions=directions)))
    experiment = getattr(logger, "experiment", None)
    if experiment is not None and hasattr(experiment, "add_image"):
        import numpy as np
        from PIL import Image

        picture = Image.open(io.BytesIO(png)).convert("RGB")
        picture.thumbnail((TENSORBOARD_WIDTH, TENSORBOARD_WIDTH))  # print resolution is for paper, not a browser
        image = np.asarray(picture)
        experiment.add_image("curve/metrics_vs_t", image, dataformats="HWC")
    return summary
