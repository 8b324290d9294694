"""The grid report on synthetic curve results: the table's numbers are the inputs' means and Student t intervals,
the verdicts follow the intervals, the agreement is the Spearman correlation of the oriented metrics, the sentences
say what the cells hold, and a figure per headline metric is drawn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from mcu_lightning.report.curve import BARRIER_JSON, CURVE_METRICS_CSV, barrier_summaries, write_csv
from mcu_lightning.report.grid import GRID_JSON, figure_name, write_grid_report

TS = [0.0, 0.25, 0.5, 0.75, 1.0]
DIRECTIONS = {"forget_quality": "higher", "forget/prob": "lower"}
TOLERANCE = 0.02
#: (contrast, split) -> per seed the dip of forget_quality at t=0.5 below both endpoints (its barrier_vs_max_end)
DIPS = {
    ("methods", "forget01"): [0.1, 0.2, 0.3],  # mean 0.2, interval wide: undecided
    ("methods", "forget10"): [0.001, 0.002, 0.003],  # interval below the tolerance: barrier-free
    ("seeds", "forget01"): [0.5, 0.6, 0.7],  # interval above the tolerance: a barrier
    ("seeds", "forget10"): [0.25, 0.25, 0.25],  # no spread: an interval of width 0 above the tolerance
}


def _curve(folder: Path, dip: float, prob_moves_with_quality: bool) -> None:
    """forget_quality 0.8 at both ends, 0.8 - dip at t=0.5; forget/prob along t (lower is better) either mirrors it
    (rho +1 once oriented) or rises with it (rho -1)."""
    quality = [0.8, 0.8 - dip / 2, 0.8 - dip, 0.8 - dip / 2, 0.8]
    prob = [1 - q for q in quality] if prob_moves_with_quality else quality
    rows = [{"t": t, "forget_quality": q, "forget/prob": p} for t, q, p in zip(TS, quality, prob, strict=True)]
    columns = ["t", "forget_quality", "forget/prob"]
    folder.mkdir(parents=True)
    write_csv(folder / CURVE_METRICS_CSV, columns, rows)
    summary = barrier_summaries(columns, rows, DIRECTIONS.__getitem__)
    (folder / BARRIER_JSON).write_text(json.dumps(summary))


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    seeds = [0, 1, 2]
    studies = {}
    for split in ("forget01", "forget10"):
        root = f"g_{split}"
        curves = {c: {str(s): f"{c}-s{s}" for s in seeds} for c in ("methods", "seeds")}
        for (contrast, where), dips in DIPS.items():
            if where == split:
                for seed, dip in zip(seeds, dips, strict=True):
                    _curve(tmp_path / root / "curves" / f"{contrast}-s{seed}", dip, contrast == "methods")
        studies[split] = {"root": root, "curves": curves, "wall_seconds": 12.5, "stage_seconds": 10.0}
    manifest = {
        "name": "g",
        "seeds": seeds,
        "contrasts": [
            {"name": "methods", "endpoints": ["graddiff", "npo"], "other_seed": False},
            {"name": "seeds", "endpoints": ["graddiff", "graddiff"], "other_seed": True},
        ],
        "metrics": ["forget_quality", "forget/prob"],
        "barrier": "vs_max_end",
        "tolerance": TOLERANCE,
        "studies": studies,
    }
    (tmp_path / GRID_JSON).write_text(json.dumps(manifest))
    return tmp_path


def _student_t(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n)) if sd > 0 else (mean, mean)
    return mean, float(low), float(high)


def _table(text: str, heading: str) -> dict[str, list[str]]:
    lines = text.split(f"## {heading}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return {line.split(" | ")[0].strip("| ").split(":")[0]: line.strip("| ").split(" | ")[1:] for line in lines[2:]}


def test_the_grid_table_holds_the_mean_and_student_t_interval_of_each_cells_barriers(grid: Path) -> None:
    text = write_grid_report(grid).read_text()
    table = _table(text, "Grid table (forget_quality)")
    assert list(table) == ["methods", "seeds"]
    verdicts = {
        ("methods", "forget01"): "undecided",
        ("methods", "forget10"): "barrier-free",
        ("seeds", "forget01"): "barrier",
        ("seeds", "forget10"): "barrier",
    }
    for (contrast, split), dips in DIPS.items():
        cell = table[contrast][["forget01", "forget10"].index(split)]
        mean, low, high = _student_t(dips)
        assert cell.startswith(f"{mean:.3g} [{low:.3g}, {high:.3g}] {verdicts[contrast, split]};"), (contrast, split)
        assert "interior beats both ends 0/3" in cell  # the dip is a barrier, never a better interior point
        rho = 1 if contrast == "methods" else -1  # forget/prob mirrors forget_quality, or moves against it
        assert f"rho {rho:.3g} [{rho:.3g}, {rho:.3g}]" in cell
    assert "seeds: graddiff vs graddiff (next seed)" in text


def test_the_opening_sentences_say_what_the_cells_hold(grid: Path) -> None:
    text = write_grid_report(grid).read_text()
    assert "- `methods`: undecided on forget01; barrier-free on forget10." in text
    assert "- `seeds`: barrier on forget01, forget10. (Its seed pairs share endpoints cyclically" in text
    assert text.index("`methods`:") < text.index("## Grid table")


def test_each_headline_metric_gets_a_barrier_table_and_a_figure(grid: Path) -> None:
    path = write_grid_report(grid)
    text = path.read_text()
    prob = _table(text, "Barrier on forget/prob")
    # forget/prob mirrors forget_quality in `methods`: the same barrier heights, read the other way round
    mean, low, high = _student_t(DIPS["methods", "forget01"])
    assert prob["methods"][0] == f"{mean:.3g} [{low:.3g}, {high:.3g}] undecided"
    for metric in ("forget_quality", "forget/prob"):
        assert (path.parent / figure_name(metric)).stat().st_size > 10_000
        assert f"![{metric}]({figure_name(metric)})" in text
    assert "| g_forget01 | forget01 | 12.5 | 10 |" in text


def test_a_curve_that_has_not_run_leaves_its_cell_not_run(grid: Path) -> None:
    for seed in (0, 1, 2):
        for name in (BARRIER_JSON, CURVE_METRICS_CSV):
            (grid / "g_forget10" / "curves" / f"methods-s{seed}" / name).unlink()
    table = _table(write_grid_report(grid).read_text(), "Grid table (forget_quality)")
    assert table["methods"][1] == "not run"


def test_the_first_seeds_conclusions_are_checked_against_the_interval(grid: Path) -> None:
    """Seed 0 alone: methods/forget01 0.1 > tolerance (barrier) but the interval is undecided: it does not survive;
    the other three cells agree. forget/prob: the same for methods, no barrier either way for seeds."""
    text = write_grid_report(grid).read_text()
    section = text.split("## One seed against the interval\n\n", 1)[1].split("\n## ", 1)[0]
    assert "- forget_quality: 3 of 4 single-seed conclusions survive." in section
    assert "- forget/prob: 3 of 4 single-seed conclusions survive." in section
    mean, low, high = _student_t(DIPS["methods", "forget01"])
    assert f"| methods | forget01 | 0.1 barrier | {mean:.3g} [{low:.3g}, {high:.3g}] undecided | no |" in section
    assert "| methods | forget10 | 0.001 barrier-free |" in section and section.count("| yes |") == 3
