"""The summary's robustness lines: the most robust probed point, interior or not, at a utility near the best."""

from __future__ import annotations

import math

from mcu_lightning.report.curve import panels, plot_curve
from mcu_lightning.report.summary import FORGOTTEN_BELOW, UTILITY_TOLERANCE, robustness_section

NAN = math.nan
COLUMNS = ["t", "model_utility", "forget/prob", "probe/relearn/forget/prob", "probe/relearn/forget/prob_recovery"]


def _rows(utilities: list[float], recoveries: list[float], before: float = 0.1) -> list[dict[str, float]]:
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    return [
        {
            "t": t,
            "model_utility": u,
            "forget/prob": before,
            "probe/relearn/forget/prob": before + r,
            "probe/relearn/forget/prob_recovery": r,
        }
        for t, u, r in zip(ts, utilities, recoveries, strict=True)
    ]


def test_the_interior_point_with_the_smallest_recovery_at_good_utility_is_named() -> None:
    rows = _rows([0.80, 0.9, 0.79, 0.9, 0.81], [0.30, NAN, 0.05, NAN, 0.20])
    text = "\n".join(robustness_section(COLUMNS, rows))
    assert "Most robust under `relearn`: t=0.5, an interior point" in text
    assert "Lowest forget/prob after `relearn` among them: t=0.5, an interior point" in text
    assert "| 0.25 |" not in text  # unprobed points are not in the table


def test_a_point_that_never_forgot_is_not_ranked_however_small_its_recovery() -> None:
    rows = _rows([0.80, 0.9, 0.80, 0.9, 0.81], [0.30, NAN, 0.05, NAN, 0.20])
    rows[2]["forget/prob"], rows[2]["probe/relearn/forget/prob"] = 0.9, 0.95  # the middle still knows the forget set
    text = "\n".join(robustness_section(COLUMNS, rows))
    assert "Most robust under `relearn`: t=1, an endpoint (smallest forget/prob recovery 0.2" in text
    assert f"ranked among the 2 of 3 probed points that forgot, forget/prob below {FORGOTTEN_BELOW}" in text
    assert "Lowest forget/prob after `relearn` among them: t=1, an endpoint" in text  # 0.1 + 0.2


def test_when_no_point_forgot_none_is_ranked() -> None:
    rows = _rows([0.80, 0.9, 0.80, 0.9, 0.81], [0.30, NAN, 0.05, NAN, 0.20], before=FORGOTTEN_BELOW + 0.1)
    text = "\n".join(robustness_section(COLUMNS, rows))
    assert "Most robust under `relearn`: none ranked; no probed point forgot" in text
    assert "t=0.5, an interior point" not in text


def test_a_point_whose_utility_is_too_low_is_not_chosen() -> None:
    low = 0.81 - 2 * UTILITY_TOLERANCE
    rows = _rows([0.80, 0.9, low, 0.9, 0.81], [0.30, NAN, 0.01, NAN, 0.20])
    text = "\n".join(robustness_section(COLUMNS, rows))
    assert "Most robust under `relearn`: t=1, an endpoint" in text


def test_no_probe_columns_no_section() -> None:
    assert robustness_section(["t", "model_utility"], [{"t": 0.0, "model_utility": 1.0}]) == []


def test_the_figure_draws_probe_recoveries_in_their_own_panels() -> None:
    names = [*COLUMNS[1:], "probe/distance/l2_base", "probe/distance/l2_end0", "probe/relearn/forget/loss_recovery"]
    groups = dict(panels(names))
    assert groups["relearn recovery: prob"] == ["probe/relearn/forget/prob_recovery"]
    assert groups["distance: l2"] == ["probe/distance/l2_base", "probe/distance/l2_end0"]
    assert not any("loss" in panel for panel in groups)  # recoveries of losses are not drawn
    rows = _rows([0.80, 0.9, 0.79, 0.9, 0.81], [0.30, NAN, 0.05, NAN, 0.20])
    figure = plot_curve(COLUMNS, rows)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert "relearn recovery: prob" in titles and "probe/relearn/forget/prob" not in " ".join(titles)
