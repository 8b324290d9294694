"""The curve figure: metrics grouped into panels (a line per split), endpoints marked, p-values on a log scale."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_hex

from mcu_lightning.report.curve import panels, plot_curve, render_png, save_figure
from mcu_lightning.report.figure_style import COLORS, PRINT_DPI, curve_title

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


CLASSIFICATION_NAMES = [
    *(f"{split}/{metric}" for split in ("forget", "retain", "test") for metric in ("acc", "loss")),
    "mia_auc",
]


def _rows(names: list[str], points: int = 11) -> list[dict[str, float]]:
    ts = [i / (points - 1) for i in range(points)]
    return [{"t": t, **{name: 0.5 + 0.4 * math.sin(3 * t + i) for i, name in enumerate(names)}} for t in ts]


def _boxes(fig: Any) -> tuple[Any, list[Any]]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn = [ax for ax in fig.axes if ax.axison]
    return fig.get_tightbbox(renderer), [ax.get_tightbbox(renderer) for ax in drawn]


@pytest.mark.parametrize("names", [QA_NAMES, CLASSIFICATION_NAMES], ids=["qa", "classification"])
def test_nothing_is_clipped_or_overlaps(names: list[str]) -> None:
    fig = plot_curve(["t", *names], _rows(names), title="graddiff-npo: graddiff (t=0) → npo (t=1)")
    whole, panels_drawn = _boxes(fig)
    width, height = fig.get_size_inches()
    # everything drawn (titles, labels, the legend) lies on the canvas
    assert whole.x0 >= 0 and whole.y0 >= 0 and whole.x1 <= width * fig.dpi and whole.y1 <= height * fig.dpi
    for i, a in enumerate(panels_drawn):  # a panel with its labels does not run into its neighbours
        for b in panels_drawn[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    legend = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    assert not any(legend.overlaps(box) for box in panels_drawn)
    plt.close(fig)


def test_one_colour_per_split_and_attack_in_every_panel_and_one_legend() -> None:
    fig = plot_curve(["t", *QA_NAMES], _rows(QA_NAMES))
    colours: dict[str, set[str]] = {}
    for ax in fig.axes:
        assert ax.get_legend() is None  # no per-panel legend
        for line in ax.get_lines():
            colours.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
    assert all(len(c) == 1 for c in colours.values()), colours
    assert colours["forget"] == {to_hex(COLORS["forget"])} and colours["min_k"] == {to_hex(COLORS["min_k"])}
    assert len(fig.legends) == 1
    legend_labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert {"forget", "retain", "holdout", "loss", "zlib", "min_k", "endpoints"} == set(legend_labels)
    assert min(text.get_fontsize() for text in fig.legends[0].get_texts()) >= 8  # readable at print size
    plt.close(fig)


def test_y_labels_name_the_better_direction_and_the_title_the_endpoints() -> None:
    fig = plot_curve(["t", *QA_NAMES], _rows(QA_NAMES), title=curve_title("a-b", ["runs/s/endpoints/a/model", "b"]))
    labels = {ax.get_title(): ax.get_ylabel() for ax in fig.axes if ax.axison}
    assert labels["prob"] == "prob (↑ better; forget ↓)"  # retain ↑, forget ↓, holdout: no direction
    assert labels["loss"] == "loss (↓ better; forget ↑)"
    assert labels["privleak"] == "privleak (→0 better)"
    assert labels["forget_quality"] == "forget_quality (↑ better)"
    assert all(ax.get_xlabel() == "t" for ax in fig.axes if ax.axison)
    assert fig._suptitle.get_text() == "a-b: a (t=0) → b (t=1)"
    plt.close(fig)


def test_png_is_at_print_resolution_and_a_vector_copy_is_optional(tmp_path: Path) -> None:
    from PIL import Image

    save_figure(plot_curve(["t", *CLASSIFICATION_NAMES], _rows(CLASSIFICATION_NAMES)), tmp_path / "c.png", "pdf")
    with Image.open(tmp_path / "c.png") as image:
        assert round(image.info["dpi"][0]) == PRINT_DPI
    assert (tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-"
    save_figure(plot_curve(["t", *CLASSIFICATION_NAMES], _rows(CLASSIFICATION_NAMES)), tmp_path / "d.png")
    assert not (tmp_path / "d.pdf").exists() and not (tmp_path / "d.svg").exists()
    with pytest.raises(ValueError, match="choose one of pdf, svg"):
        save_figure(plot_curve(["t", "mia_auc"], _rows(["mia_auc"])), tmp_path / "e.png", "eps")
