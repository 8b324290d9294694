"""Names in any script draw without missing glyphs: a CJK curve or endpoint name in a figure's title or legend
is drawn with an installed font that has it, or written as its code points where none has, never as empty
boxes with matplotlib's "Glyph ... missing from font(s)" warning."""

from __future__ import annotations

import warnings
from typing import Any

import matplotlib.pyplot as plt

from mcu_lightning.report.curve import figure_legend, plot_curve, render_png
from mcu_lightning.report.figure_style import _fonts, curve_title, drawable

NAME = "遗忘-曲线"


def _drawn_without_missing_glyphs(fig: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        render_png(fig)
    plt.close(fig)
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert missing == []


def _has_glyphs(text: str) -> bool:
    return all(any(ord(c) in chars for _, chars in _fonts()) for c in text)


def test_a_cjk_curve_name_in_the_title_has_its_glyphs_or_its_code_points() -> None:
    title = curve_title(NAME, ["runs/s/endpoints/梯度/model", "npo"])
    fig = plot_curve(
        ["t", "forget/prob", "retain/prob"], [{"t": 0.0, "forget/prob": 0.5, "retain/prob": 0.9}] * 2, title=title
    )
    drawn = fig.texts[0].get_text()
    if _has_glyphs(NAME):  # a CJK font is installed: the name as written, in that font
        assert NAME in drawn and len(fig.texts[0].get_fontfamily()) > 1
    else:  # none is: the code points, readable and distinct per name
        assert "\\u9057\\u5fd8-\\u66f2\\u7ebf" in drawn and "\\u68af\\u5ea6 (t=0) → npo (t=1)" in drawn
    _drawn_without_missing_glyphs(fig)


def test_cjk_curve_names_in_the_legend_draw_without_missing_glyphs() -> None:
    fig, ax = plt.subplots()
    handles = {name: ax.plot([0, 1], [0, 1])[0] for name in (NAME, "base-npo", "Ελληνικά")}
    figure_legend(fig, handles)
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels[1:] == ["base-npo", "Ελληνικά"]  # the default font has Greek: left as written
    assert labels[0] == (NAME if _has_glyphs(NAME) else drawable(NAME)[0])
    _drawn_without_missing_glyphs(fig)
