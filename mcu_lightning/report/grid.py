"""The grid report: every contrast of the paper's grid on every forget split, as one table and one figure a metric.

Reads ``grid.json`` (written by ``mcu grid``: which curve is which split, contrast and seed) and each curve's saved
``barrier_summary.json`` and ``curve_metrics.csv``; loads no model. For each cell (contrast x forget split), over
the seeds:

- **barrier**: the grid's barrier definition (``barrier_vs_max_end`` by default; :mod:`mcu_lightning.curves.barrier`)
  of the first headline metric, as a mean and a 95 % Student t interval over seeds
  (:func:`mcu_lightning.metrics.intervals.mean_interval`). The cell is *barrier-free* when the interval's upper end
  lies below the grid's ``tolerance``, a *barrier* when its lower end lies above it, *undecided* otherwise, and
  *one run* with a single seed (no interval).
- **best interior point**: in how many seeds an interior point beats both endpoints on that metric, and the mean
  margin (best interior minus best endpoint, in the metric's better direction).
- **agreement** rho: along t, the Spearman rank correlation of each pair of headline metrics, each read in its better
  direction (higher: as is; lower: negated; zero: minus its absolute value), averaged over the pairs; its mean and
  interval over seeds. +1: the metrics improve together along the path; -1: where one improves another worsens.

``grid.md`` opens with sentences generated from those cells, then the grid table, how many conclusions of the
first seed alone (a single-seed study's reading: a barrier when its height exceeds the tolerance) the interval over
seeds confirms, a barrier table per headline metric, and one figure per headline metric: the metric against t, one
panel per contrast (factor), one line per forget split (mean over seeds) with its 95 % band.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.names import CURVES_DIR, REPORT_DIR
from mcu_lightning.core.storage import read_json
from mcu_lightning.metrics.intervals import Interval, mean_interval
from mcu_lightning.report.curve import (
    BARRIER_JSON,
    CURVE_METRICS_CSV,
    figure_legend,
    legend_rows,
    panel_figure,
    read_csv,
    save_figure,
)
from mcu_lightning.report.seeds import band_over_seeds, barrier_free, interval_text, metric_over_seeds, num, ranked

GRID_JSON = "grid.json"
GRID_REPORT = "grid.md"


def figure_name(metric: str) -> str:
    """The file of a headline metric's figure: ``grid_forget_prob.png`` for ``forget/prob``."""
    return "grid_" + metric.replace("/", "_") + ".png"


@dataclass
class Run:
    """One curve of the grid: its barrier summary and its metrics along t (``None`` where the curve has not run)."""

    seed: int
    summary: dict[str, Any] | None
    rows: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Cell:
    """One contrast on one forget split, summarised over its seeds for ``metric``."""

    barrier: Interval
    verdict: str
    beats: int
    runs: int
    margin: Interval
    agreement: Interval
    first: float = math.nan  # the barrier height of the grid's first seed alone (NaN: that run is missing)


def read_runs(grid_root: Path, entry: dict[str, Any], contrast: str) -> list[Run]:
    """The curves of ``contrast`` in one split's study, by seed (missing files: a run with no summary)."""
    runs = []
    for seed, name in entry["curves"].get(contrast, {}).items():
        folder = grid_root / entry["root"] / CURVES_DIR / name
        summary = read_json(folder / BARRIER_JSON) if (folder / BARRIER_JSON).is_file() else None
        rows = read_csv(folder / CURVE_METRICS_CSV)[1] if (folder / CURVE_METRICS_CSV).is_file() else []
        runs.append(Run(int(seed), summary, rows))
    return runs


def _metric(run: Run, metric: str) -> dict[str, Any] | None:
    """The metric's barrier summary in ``run``, or ``None`` when it is missing, not computed or not ranked."""
    entry = (run.summary or {}).get("metrics", {}).get(metric)
    return entry if ranked(entry) else None


def oriented(values: Sequence[float], direction: str) -> list[float]:
    """A series read in its better direction (higher is better afterwards): ``lower`` negated, ``zero`` as ``-|m|``."""
    if direction == "lower":
        return [-v for v in values]
    if direction == "zero":
        return [-abs(v) for v in values]
    return list(values)


def agreement(run: Run, metrics: Sequence[str]) -> float:
    """Mean Spearman correlation along t over the pairs of ``metrics`` (each oriented, see :func:`oriented`); pairs
    where a series is constant (no ranking) are left out; NaN when no pair is left."""
    from scipy.stats import spearmanr

    series = {}
    for metric in metrics:
        entry = _metric(run, metric)
        values = [row.get(metric, math.nan) for row in run.rows]
        if entry is not None and values and all(math.isfinite(v) for v in values):
            series[metric] = oriented(values, entry["direction"])
    correlations = []
    for a, b in itertools.combinations(series, 2):
        if len(set(series[a])) > 1 and len(set(series[b])) > 1:
            correlations.append(float(spearmanr(series[a], series[b]).statistic))
    return sum(correlations) / len(correlations) if correlations else math.nan


def verdict(barrier: Interval, tolerance: float) -> str:
    """``barrier-free`` (interval below ``tolerance``), ``barrier`` (above it), ``undecided``, or ``one run``."""
    if barrier.n < 2:
        return "one run" if barrier.n == 1 else "not run"
    return {True: "barrier-free", False: "barrier", None: "undecided"}[barrier_free(barrier, tolerance)]


def cell(
    runs: Sequence[Run], metric: str, metrics: Sequence[str], barrier: str, tolerance: float, first_seed: int = 0
) -> Cell:
    """The cell of one contrast on one split for ``metric`` (see the module docstring)."""
    entries = [(run, _metric(run, metric)) for run in runs]
    entries = [(run, entry) for run, entry in entries if entry is not None]
    over = metric_over_seeds([entry for _, entry in entries], barrier=f"barrier_{barrier}")
    first = [float(entry[f"barrier_{barrier}"]) for run, entry in entries if run.seed == first_seed]
    return Cell(
        first=first[0] if first else math.nan,
        barrier=over.barrier,
        verdict=verdict(over.barrier, tolerance),
        beats=over.beats,
        runs=over.n,
        margin=over.margin,
        agreement=mean_interval(agreement(run, metrics) for run, _ in entries),
    )


def cell_text(c: Cell) -> str:
    """A table cell: the barrier with its interval and verdict, the best interior point, the agreement."""
    if c.runs == 0:
        return "not run"
    return (
        f"{interval_text(c.barrier)} {c.verdict}; interior beats both ends {c.beats}/{c.runs} "
        f"(margin {num(c.margin.mean)}); rho {interval_text(c.agreement)}"
    )


def cells(grid_root: Path, manifest: dict[str, Any], metric: str) -> dict[str, dict[str, Cell]]:
    """``cells[contrast][split]`` for ``metric``."""
    out: dict[str, dict[str, Cell]] = {}
    for contrast in manifest["contrasts"]:
        out[contrast["name"]] = {
            split: cell(
                read_runs(grid_root, entry, contrast["name"]),
                metric,
                manifest["metrics"],
                manifest["barrier"],
                manifest["tolerance"],
                manifest["seeds"][0],
            )
            for split, entry in manifest["studies"].items()
        }
    return out


def grid_table(
    table: dict[str, dict[str, Cell]], contrasts: Sequence[dict[str, Any]], splits: Sequence[str]
) -> list[str]:
    """A row per contrast (its pair of recipes), a column per forget split."""
    lines = ["| contrast | " + " | ".join(splits) + " |", "| --- |" + " --- |" * len(splits)]
    for contrast in contrasts:
        pair = " vs ".join(contrast["endpoints"]) + (" (next seed)" if contrast.get("other_seed") else "")
        row = " | ".join(cell_text(table[contrast["name"]][split]) for split in splits)
        lines.append(f"| {contrast['name']}: {pair} | {row} |")
    return lines


def barrier_table(table: dict[str, dict[str, Cell]], splits: Sequence[str]) -> list[str]:
    lines = ["| contrast | " + " | ".join(splits) + " |", "| --- |" + " --- |" * len(splits)]
    for name, by_split in table.items():
        row = " | ".join(
            f"{interval_text(c.barrier)} {c.verdict}" if c.runs else "not run" for c in (by_split[s] for s in splits)
        )
        lines.append(f"| {name} | {row} |")
    return lines


def findings(
    table: dict[str, dict[str, Cell]], metric: str, manifest: dict[str, Any], splits: Sequence[str]
) -> list[str]:
    """One sentence per contrast, from its cells alone: on which splits the barrier on ``metric`` is present,
    absent or undecided, and where an interior point beat both endpoints in every seed."""
    sentences = []
    other_seed = {c["name"] for c in manifest["contrasts"] if c.get("other_seed")}
    for name, by_split in table.items():
        groups: dict[str, list[str]] = {}
        for split in splits:
            groups.setdefault(by_split[split].verdict, []).append(split)
        parts = [f"{what} on {', '.join(where)}" for what, where in groups.items()]
        always = [s for s in splits if by_split[s].runs and by_split[s].beats == by_split[s].runs]
        sentence = f"- `{name}`: {'; '.join(parts)}."
        if always:
            sentence += f" An interior point beats both endpoints on {metric} in every seed on {', '.join(always)}."
        if name in other_seed:
            sentence += " (Its seed pairs share endpoints cyclically, so its interval is optimistic.)"
        sentences.append(sentence)
    return sentences


def single_seed(c: Cell, tolerance: float) -> str:
    """What the first seed alone concludes: ``barrier`` above ``tolerance``, ``barrier-free`` otherwise."""
    return "n/a" if not math.isfinite(c.first) else "barrier" if c.first > tolerance else "barrier-free"


def survival(
    tables: dict[str, dict[str, dict[str, Cell]]], splits: Sequence[str], seed: int, tolerance: float
) -> list[str]:
    """Per headline metric, how many of the first seed's conclusions (barrier or not, one run as a single-seed study
    draws it) the interval over seeds confirms; the first metric's cells as a table."""
    lines = [
        f"Seed {seed} alone (one run, as a single-seed study reads it) calls a barrier when its height exceeds "
        f"{tolerance}; a conclusion survives when the interval over seeds gives the same verdict (undecided does not).",
        "",
    ]
    for metric, table in tables.items():
        pairs = [
            (single_seed(c, tolerance), c.verdict)
            for by_split in table.values()
            for c in (by_split[s] for s in splits)
            if math.isfinite(c.first)
        ]
        kept = sum(one == over for one, over in pairs)
        lines.append(f"- {metric}: {kept} of {len(pairs)} single-seed conclusions survive.")
    head = next(iter(tables))
    lines += ["", f"| contrast | split | seed {seed} alone ({head}) | over seeds | survives |", "| --- " * 5 + "|"]
    for name, by_split in tables[head].items():
        for split in splits:
            c = by_split[split]
            if math.isfinite(c.first):
                one = single_seed(c, tolerance)
                lines.append(
                    f"| {name} | {split} | {num(c.first)} {one} | {interval_text(c.barrier)} {c.verdict} "
                    f"| {'yes' if one == c.verdict else 'no'} |"
                )
    return lines


def band(runs: Sequence[Run], metric: str) -> tuple[list[float], list[Interval]]:
    """The t grid and, at each t, the mean and interval of ``metric`` over the runs that have it on that grid."""
    usable = [run for run in runs if run.rows and metric in run.rows[0]]
    if not usable:
        return [], []
    ts = [row["t"] for row in usable[0].rows]
    usable = [run for run in usable if [row["t"] for row in run.rows] == ts]
    return ts, band_over_seeds([run.rows for run in usable], metric)


def plot_metric(grid_root: Path, manifest: dict[str, Any], metric: str) -> Any:
    """``metric`` against t: a panel per contrast, a line per forget split (mean over seeds), a 95 % band."""
    from matplotlib.lines import Line2D

    from mcu_lightning.report.figure_style import LABEL_FONT, OKABE_ITO, direction_label

    splits = list(manifest["studies"])
    colors = {split: OKABE_ITO[i % len(OKABE_ITO)] for i, split in enumerate(splits)}
    handles = {split: Line2D([], [], color=c, linewidth=1.8) for split, c in colors.items()}
    n = len(manifest["seeds"])
    title = f"{metric} along the curves of {manifest['name']} (mean over {n} seeds, 95 % band)"
    fig, axes = panel_figure(len(manifest["contrasts"]), title, legend_rows(len(handles)))
    for ax, contrast in zip(axes.flat, manifest["contrasts"], strict=False):
        for split, entry in manifest["studies"].items():
            ts, values = band(read_runs(grid_root, entry, contrast["name"]), metric)
            if not ts:
                continue
            ax.plot(ts, [v.mean for v in values], color=colors[split], linewidth=1.5)
            if all(v.has_interval for v in values):
                ax.fill_between(ts, [v.low for v in values], [v.high for v in values], color=colors[split], alpha=0.2)
        pair = " vs ".join(contrast["endpoints"]) + (" (next seed)" if contrast.get("other_seed") else "")
        ax.set_title(f"{contrast['name']}: {pair}", fontsize=8)
        ax.set_xlabel("t", fontsize=LABEL_FONT)
        ax.set_ylabel(direction_label(metric, [metric], {}), fontsize=LABEL_FONT)
        ax.tick_params(labelsize=LABEL_FONT - 1)
    figure_legend(fig, handles)
    return fig


def _times(manifest: dict[str, Any]) -> list[str]:
    lines = ["| study | forget split | wall seconds (mcu grid) | stage seconds |", "| --- | --- | --- | --- |"]
    for split, entry in manifest["studies"].items():
        lines.append(
            f"| {entry['root']} | {split} | {num(entry.get('wall_seconds', math.nan))} "
            f"| {num(entry.get('stage_seconds', math.nan))} |"
        )
    return lines


def write_grid_report(grid_root: Path, vector: str | None = None) -> Path:
    """Write ``<grid_root>/report/grid.md`` and a figure per headline metric; return the markdown's path."""
    grid_root = Path(grid_root)
    manifest = read_json(grid_root / GRID_JSON)
    out = grid_root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    splits = list(manifest["studies"])
    metrics = manifest["metrics"]
    seeds = manifest["seeds"]
    tables = {metric: cells(grid_root, manifest, metric) for metric in metrics}
    head = metrics[0]
    barrier, tolerance = manifest["barrier"], manifest["tolerance"]
    lines = [
        f"# MCU grid: {manifest['name']}",
        "",
        f"{len(manifest['contrasts'])} contrasts x {len(splits)} forget splits x {len(seeds)} seeds {seeds}. Barrier: "
        f"`barrier_{barrier}` of {head}, mean and 95 % Student t interval over seeds; barrier-free when the interval "
        f"lies below {tolerance}, a barrier when it lies above, undecided otherwise. The base and the oracle are "
        "the same for every seed (the seeds vary the unlearning runs and the curves).",
        "",
        *findings(tables[head], head, manifest, splits),
        "",
        f"## Grid table ({head})",
        "",
        *grid_table(tables[head], manifest["contrasts"], splits),
        "",
        f"rho: mean Spearman correlation along t of the pairs of {', '.join(metrics)}, each read in its better "
        "direction (+1 they improve together, -1 one improves where another worsens); mean [95 % interval] over seeds.",
        "",
    ]
    lines += ["## One seed against the interval", "", *survival(tables, splits, seeds[0], tolerance), ""]
    for metric in metrics:
        lines += [f"## Barrier on {metric}", "", *barrier_table(tables[metric], splits), ""]
        save_figure(plot_metric(grid_root, manifest, metric), out / figure_name(metric), vector=vector)
        lines += [f"![{metric}]({figure_name(metric)})", ""]
    lines += ["## Time per study", "", *_times(manifest), ""]
    path = out / GRID_REPORT
    atomic_write(path, "\n".join(lines).encode())
    return path
