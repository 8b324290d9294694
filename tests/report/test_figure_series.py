"""Figures read at a glance: one colour a series across panels and figures, no two series alike in a panel.

Checked on the rendered figures (their lines and legend handles), for the quickstart's per-curve columns (suite,
probes, distances), the digits suite's and the comparison figure's curves.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from matplotlib.colors import to_hex

from mcu_lightning.report.curve import headline_panels, panels, plot_curve
from mcu_lightning.report.summary import plot_comparison

QA = [
    "t",
    "forget_quality",
    "model_utility",
    "forget/prob",
    "retain/prob",
    "holdout/prob",
    "forget/rouge",
    "retain/rouge",
    "forget/truth_ratio",
    "mia_loss_auc",
    "mia_zlib_auc",
    "mia_min_k_auc",
    "privleak",
    "probe/distance/cos_end0",
    "probe/distance/cos_end1",
    "probe/distance/l2_base",
    "probe/distance/l2_end0",
    "probe/distance/l2_end1",
    "probe/relearn/forget/prob",
    "probe/relearn/forget/prob_recovery",
    "probe/relearn/forget_quality",
    "probe/relearn/forget_quality_recovery",
    "probe/relearn/model_utility",
    "probe/relearn/model_utility_recovery",
]
DIGITS = ["t", "forget/acc", "retain/acc", "test/acc", "forget/loss", "mia_auc", "mia_auc_gap", "zrf"]


def _rows(columns: list[str], count: int = 5) -> list[dict[str, float]]:
    return [
        {c: (i / (count - 1) if c == "t" else 0.1 + 0.01 * i + 0.001 * j) for j, c in enumerate(columns)}
        for i in range(count)
    ]


def _style(line: Any) -> tuple[str, str, str]:
    return to_hex(line.get_color()), str(line.get_linestyle()), str(line.get_marker())


def _series(fig: Any) -> list[dict[str, tuple[str, str, str]]]:
    """Per panel: each line's label -> (colour, line style, marker)."""
    found = []
    for ax in fig.axes:
        lines = {line.get_label(): _style(line) for line in ax.get_lines() if not line.get_label().startswith("_")}
        if lines:
            found.append(lines)
    return found


@pytest.mark.parametrize("columns", [QA, DIGITS], ids=["qa", "digits"])
def test_a_series_has_one_colour_everywhere_and_no_two_in_a_panel_look_alike(columns: list[str]) -> None:
    fig = plot_curve(columns, _rows(columns))
    per_panel = _series(fig)
    everywhere: dict[str, set[str]] = {}
    for lines in per_panel:
        looks = [(colour, style) for colour, style, _ in lines.values()]
        assert len(set(looks)) == len(looks), f"two series alike in one panel: {lines}"
        for label, (colour, _, _) in lines.items():
            everywhere.setdefault(label, set()).add(colour)
    assert {label: c for label, c in everywhere.items() if len(c) > 1} == {}, "a series changes colour"
    legend = fig.legends[0]
    labels = [text.get_text() for text in legend.get_texts()]
    assert all(label.strip() for label in labels), f"blank legend entry: {labels}"
    handles = [(to_hex(h.get_color()), str(h.get_linestyle())) for h in legend.legend_handles]
    assert len(set(handles)) == len(handles), dict(zip(labels, handles, strict=True))


def test_forget_quality_has_its_colour_in_its_panel_and_in_the_recovery_panel() -> None:
    fig = plot_curve(QA, _rows(QA))
    colours = {s[0] for lines in _series(fig) for label, s in lines.items() if label == "forget_quality"}
    assert len(colours) == 1 and colours != {"#000000"}
    panels_with_it = [lines for lines in _series(fig) if "forget_quality" in lines]
    assert len(panels_with_it) == 2  # its own and the relearn recovery panel


def test_the_headline_figure_holds_the_papers_metrics_and_the_appendix_all() -> None:
    groups = panels([c for c in QA if c != "t"])
    assert [name for name, _ in headline_panels(groups)] == ["forget_quality", "model_utility", "prob", "rouge"]
    headline = plot_curve(QA, _rows(QA), only=headline_panels)
    appendix = plot_curve(QA, _rows(QA))
    drawn = [ax for ax in headline.axes if ax.get_lines()]
    assert len(drawn) == 4 and len([ax for ax in appendix.axes if ax.get_lines()]) > 8


def test_overlapping_curves_of_the_comparison_are_drawn_distinguishably() -> None:
    rows = _rows(["t", "model_utility"])
    curves = {name: (["t", "model_utility"], rows) for name in ("trained", "line", "slerp", "base-path")}
    fig = plot_comparison(curves, ["model_utility"])
    (ax,) = [ax for ax in fig.axes if ax.get_lines()]
    looks = [(str(line.get_linestyle()), str(line.get_marker())) for line in ax.get_lines()]
    assert len(set(looks)) == len(looks) == 4  # same values, yet each curve has its own dash and marker
    assert not any(math.isnan(y) for line in ax.get_lines() for y in line.get_ydata())
