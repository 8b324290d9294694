"""The report's view of what a study did with its curves: merge and ensemble rows for the endpoint table, and the
plane figures and exported best points of each curve's section (folders written by ``mcu_lightning.study.uses``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mcu_lightning.core.atomic import atomic_copy
from mcu_lightning.core.names import BEST_JSON, MERGES_DIR, MODEL_DIR, PLANE_DIR, TEST_METRICS
from mcu_lightning.core.storage import read_json
from mcu_lightning.report.stages import shown


def use_nodes(
    root: Path, aggregates: Callable[[Path], dict[str, float]], allowed: set[str] | None = None
) -> dict[str, dict[str, float]]:
    """Rows for the endpoint table: ``merge <name>`` (``merges/<name>/``) and ``<curve> ensemble <name>``
    (``curves/<curve>/ensemble-<name>/``), each from its test metrics."""
    rows: dict[str, dict[str, float]] = {}
    merges = root / MERGES_DIR
    if merges.is_dir():
        for folder in sorted(p for p in merges.iterdir() if p.is_dir() and shown(root, p, allowed)):
            rows[f"merge {folder.name}"] = aggregates(folder / TEST_METRICS)
    for path in sorted(root.glob(f"curves/*/ensemble-*/{TEST_METRICS}")):
        if not shown(root, path.parent, allowed):
            continue
        curve, ensemble = path.parent.parent.name, path.parent.name.removeprefix("ensemble-")
        rows[f"{curve} ensemble {ensemble}"] = aggregates(path)
    return {name: values for name, values in rows.items() if values}


def curve_use_lines(
    folder: Path, out: Path, name: str, fmt: Callable[[object], str], allowed: set[str] | None = None
) -> list[str]:
    """Summary lines of one curve's exported best points and metric plane; the plane's figures are copied to
    ``out/<name>/`` and linked (``allowed``: the folders of the study's complete stages; ``None``: all)."""
    root = folder.parent.parent
    lines: list[str] = []
    for path in sorted(folder.glob(f"best-*/{BEST_JSON}")):
        if not shown(root, path.parent, allowed):
            continue
        best = read_json(path)
        where = path.parent.relative_to(folder.parent.parent) / best.get("folder", MODEL_DIR)
        lines.append(
            f"Best interior by {best['metric']} ({best['direction']}): t={fmt(best['t'])} ({fmt(best['value'])}), "
            f"exported to `{where.as_posix()}`."
        )
    lines += [""] if lines else []
    plane = folder / PLANE_DIR
    figures = sorted(plane.glob("plane_*.png")) if shown(root, plane, allowed) else []
    if figures:
        (out / name).mkdir(parents=True, exist_ok=True)
        lines += [
            f"Metric plane through the curve's three bends (`{name}/plane_*.png`, grid in `plane_metrics.csv`):",
            "",
        ]
        for figure in figures:
            atomic_copy(figure, out / name / figure.name)
            lines.append(f"![{figure.stem}]({name}/{figure.name})")
        lines.append("")
    return lines
