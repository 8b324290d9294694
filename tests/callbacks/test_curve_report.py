"""The curve figure: metrics grouped into panels (a line per split), endpoints marked, p-values on a log scale."""

from __future__ import annotations

import math

from mcu_lightning.callbacks.curve_report import panels, plot_curve, render_png

QA_NAMES = [
    *(f"{split}/{metric}" for split in ("forget", "retain", "holdout") for metric in ("loss", "prob", "rouge")),
    "forget_quality",
    "model_utility",
    "mia_loss_auc",
    "mia_min_k_auc",
    "privleak",
    "privleak_zlib",
]


def test_panels_group_splits_and_mia_attacks() -> None:
    groups = dict(panels(QA_NAMES))
    assert list(groups) == ["forget_quality", "model_utility", "prob", "rouge", "loss", "MIA AUC", "privleak"]
    assert groups["prob"] == ["forget/prob", "retain/prob", "holdout/prob"]
    assert groups["MIA AUC"] == ["mia_loss_auc", "mia_min_k_auc"]
    assert groups["privleak"] == ["privleak", "privleak_zlib"]


def test_figure_has_a_line_per_metric_and_marks_the_endpoints() -> None:
    ts = [i / 10 for i in range(11)]
    rows = [{"t": t, **{name: 0.5 + 0.4 * math.sin(3 * t + i) for i, name in enumerate(QA_NAMES)}} for t in ts]
    for row in rows:
        row["forget_quality"] = 10 ** (-3 * row["t"])
    fig = plot_curve(["t", *QA_NAMES], rows, title="a-b")
    drawn = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in drawn] == [key for key, _ in panels(QA_NAMES)]
    prob = drawn[2]
    assert [line.get_label() for line in prob.get_lines()] == ["forget", "retain", "holdout"]
    assert [list(c.get_offsets()[:, 0]) for c in prob.collections] == [[0.0, 1.0]] * 3  # endpoints marked
    assert drawn[0].get_yscale() == "log" and drawn[1].get_yscale() == "linear"  # forget quality: a p-value
    assert [line.get_label() for line in drawn[-1].get_lines()] == ["min_k", "zlib"]
    assert render_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
