"""What a study prints: one line per stage (what it does, how long it took, its headline metrics) and where its
report is.

- :func:`stage_line`: ``[3/7] endpoint graddiff  unlearn the base with GradDiff  9.0 s  forget/prob 0.052 ...``;
- :func:`stage_purpose`: what a stage does, from the study's spec; :func:`stage_headline`: what it found;
- :func:`report_line`: where the report is.

Lightning's progress bars are :mod:`mcu_lightning.callbacks.progress`, the study's clock
:mod:`mcu_lightning.core.clock`, the silenced third-party chatter :mod:`mcu_lightning.core.quiet`, and the tables
``mcu test`` prints :mod:`mcu_lightning.report.tables`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcu_lightning.core.curve_spec import is_training_free
from mcu_lightning.core.names import BARRIER_JSON, TEST_METRICS
from mcu_lightning.core.storage import read_json


def headline(metrics: dict[str, float], names: Sequence[str], count: int = 3) -> str:
    """The first ``count`` of ``names`` that ``metrics`` has a finite value for: ``forget/prob 0.0518 ...``."""
    shown = [(n, metrics[n]) for n in names if isinstance(metrics.get(n), (int, float)) and math.isfinite(metrics[n])]
    return "  ".join(f"{name} {value:.4g}" for name, value in shown[:count])


def stage_headline(kind: str, directory: Path, names: Sequence[str]) -> str:
    """A finished stage's headline: a model's first main test metrics, a curve's barrier on its first one."""
    if kind == "curve":
        path = directory / BARRIER_JSON
        if not path.is_file():
            return ""
        metrics = read_json(path).get("metrics", {})
        rows = [(n, metrics[n]) for n in names if math.isfinite(metrics.get(n, {}).get("barrier_vs_line", math.nan))]
        shown = [  # a barrier of 0 sits nowhere: its t is only where the search began
            f"{n} {row['barrier_vs_line']:.3g} (t={row['t_barrier_vs_line']:.2f})"
            if row["barrier_vs_line"] > 0
            else f"{n} no barrier"
            for n, row in rows[:2]
        ]
        return f"barrier vs line: {', '.join(shown)}" if shown else ""
    path = directory / TEST_METRICS
    if not path.is_file():
        return ""
    data = read_json(path)
    aggregates = {k: v for k, v in data.get("aggregates", {}).items() if isinstance(v, (int, float))}
    return headline(aggregates, names)


def _class_name(spec: Any) -> str:
    path = spec.get("class_path", "") if isinstance(spec, dict) else str(spec)
    return path.rsplit(".", 1)[-1]


def stage_purpose(kind: str, name: str, study: Any) -> str:
    """What a stage does, in a few words, from the study's spec (``study``: an ``experiment.Study``)."""
    if kind in ("base", "oracle"):
        stage = getattr(study, kind)
        if stage.path is not None:
            return f"test the {kind} at {stage.path}"
        split = stage.split or ("full" if kind == "base" else "retain")
        return f"train the {kind} on {split}"
    if kind == "endpoint":
        endpoint = next(e for e in study.endpoints if e.name == name)
        return f"unlearn the base with {_class_name(endpoint.loss)}"
    if kind == "merge":
        merge = next(m for m in study.merges if m.name == name)
        return f"merge {' + '.join(merge.endpoints)} by {merge.method} and test it"
    if kind in ("ensemble", "plane", "export"):
        curve_name, use = name.split("/", 1)
        what = {"ensemble": f"evaluate the {use}", "plane": "evaluate the metric plane", "export": f"export the {use}"}
        return f"{what[kind]} of curve {curve_name}"
    curve = next(c for c in study.curves if c.name == name)
    points = study.evaluation.eval_ts
    points = points if isinstance(points, int) else len(points)
    a, b = curve.endpoints
    if is_training_free(curve.path, curve.fixed_bends, curve.shape):  # test only
        kind = curve.path or _class_name(curve.shape)
        return f"test the {kind} path {a} -> {b} at {points} points of t (no training)"
    return f"fit a {_class_name(curve.shape)} curve {a} -> {b}, test at {points} points of t"


def stage_line(label: str, purpose: str, seconds: float | None, metric: str = "", note: str = "") -> str:
    """``[3/7] endpoint graddiff  unlearn the base with GradDiff  9.0 s  forget/prob 0.052``."""
    time_text = note or (f"{seconds:.1f} s" if seconds is not None else "")
    return "  ".join(part for part in (label, f"[dim]{purpose}[/dim]", time_text, metric) if part)


def report_line(summary: Path) -> str:
    """``report: runs/x/report/summary.md (and 4 figures in runs/x/report)``: where a study's report is."""
    figures = sorted(summary.parent.glob("*.png"))
    return f"report: {summary} (and {len(figures)} figure{'s' * (len(figures) != 1)} in {summary.parent})"
