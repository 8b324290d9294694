"""Metric-plane reports: the grid's CSV, its geometry as JSON, and one contour figure per metric with the curve,
the straight line and the three bends drawn on it (Garipov et al., 2018, Fig. 1); all files atomically."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.direction import arrow as direction_arrow
from mcu_lightning.core.names import PLANE_CSV, PLANE_JSON
from mcu_lightning.report.curve import render_png, write_csv
from mcu_lightning.report.figure_style import direction, drawable

PLANE_FIGURE = "plane_{metric}.png"


def figure_name(metric: str) -> str:
    """``plane_forget_loss.png`` for ``forget/loss``: the metric name made file-safe."""
    return PLANE_FIGURE.format(metric=re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_"))


def plot_plane(plane: Any, metric: str, title: str = "", better: str | None = None) -> Any:
    """A filled contour of ``metric`` over the plane, the curve (solid), the straight line (dashed) and the bends."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    from mcu_lightning.report.figure_style import LABEL_FONT, LEGEND_FONT

    x, y = np.meshgrid(np.asarray(plane.xs), np.asarray(plane.ys), indexing="ij")
    z = np.ma.masked_invalid(np.asarray(plane.values[metric], dtype=float))
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    finite = z.compressed()
    if finite.size and float(finite.max()) > float(finite.min()):
        filled = ax.contourf(x, y, z, levels=12, cmap="viridis")
        ax.contour(x, y, z, levels=filled.levels, colors="k", linewidths=0.3, alpha=0.5)
        bar = fig.colorbar(filled, ax=ax)
        bar.ax.tick_params(labelsize=LABEL_FONT)
    else:  # a constant (or empty) field has no contour levels: say so instead of a blank colour bar
        ax.text(0.5, 0.93, "constant over the grid" if finite.size else "no finite values", transform=ax.transAxes,
                ha="center", fontsize=LABEL_FONT)  # fmt: skip
    _, cx, cy = zip(*plane.curve, strict=True) if plane.curve else ((), (), ())
    ax.plot(cx, cy, color="#D55E00", linewidth=1.6, label="curve")
    ax.plot([0.0, plane.dx], [0.0, 0.0], color="#56B4E9", linestyle="--", linewidth=1.4, label="straight line")
    for name, (bx, by) in plane.bends.items():
        label = {"w0": "endpoint t=0", "w1": "endpoint t=1", "theta": "control point"}[name]
        marker = "s" if name == "theta" else "o"
        ax.scatter([bx], [by], marker=marker, s=28, color="black", edgecolors="white", zorder=5)
        right = name == "w1"  # its label left of the point, inside the axes
        ax.annotate(label, (bx, by), textcoords="offset points", xytext=(-4 if right else 4, 4),
                    ha="right" if right else "left", fontsize=LABEL_FONT)  # fmt: skip
    better = better or direction(metric)
    arrow = direction_arrow(better) if better != "none" else ""
    ax.set_title(f"{metric} ({arrow} better)" if arrow else metric, fontsize=9)
    if title:
        text, families = drawable(title)
        fig.suptitle(text, fontsize=9, fontfamily=families)
    ax.set_xlabel("x along w1 - w0", fontsize=LABEL_FONT)
    ax.set_ylabel("y towards the control point", fontsize=LABEL_FONT)
    ax.tick_params(labelsize=LABEL_FONT)
    ax.legend(fontsize=LEGEND_FONT, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def write_plane_report(plane: Any, out_dir: str | Path, title: str = "", vector: bool = False) -> list[Path]:
    """Write ``plane_metrics.csv`` (``grid_x, grid_y`` and one column per metric), ``plane.json`` (bends, curve,
    ``dx``, ``dy``, grid axes) and ``plane_<metric>.png`` per metric under ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    metrics = list(plane.values)
    paths = [out_dir / PLANE_CSV, out_dir / PLANE_JSON]
    write_csv(paths[0], ["grid_x", "grid_y", *metrics], plane.rows())
    geometry: Mapping[str, Any] = {
        "dx": plane.dx,
        "dy": plane.dy,
        "bends": {name: list(xy) for name, xy in plane.bends.items()},
        "curve": [{"t": t, "x": x, "y": y} for t, x, y in plane.curve],
        "curve_off_plane": plane.off_plane,
        "grid_x": plane.xs,
        "grid_y": plane.ys,
        "directions": dict(plane.directions),
    }
    atomic_write(paths[1], json.dumps(geometry, indent=1, allow_nan=True).encode())
    for metric in metrics:
        path = out_dir / figure_name(metric)
        fig = plot_plane(plane, metric, title=title, better=plane.directions.get(metric))
        atomic_write(path, render_png(fig, vector=path.with_suffix(".pdf") if vector else None))
        paths.append(path)
    return paths
