"""The opening of ``summary.md``: generated sentences whose every number matches the files, over seeds.

A hand-made study folder: curve ``methods`` run with seeds 0, 1, 2 (replicas ``methods-s0..2``) and a single curve
``solo``. Each sentence is parsed back and its numbers are recomputed here from the curves' CSVs with the formulas
(barrier vs max end = max_i m_i - max(m_0, m_1) on the lower-is-better orientation; margin = best interior
minus best endpoint in the metric's direction; Student t intervals from scipy).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mcu_lightning.report.curve import read_csv, write_csv
from mcu_lightning.report.seeds import BARRIER_TOLERANCE
from mcu_lightning.report.summary import write_report

TS = [0.0, 0.25, 0.5, 0.75, 1.0]
DIRECTIONS = {"model_utility": "higher", "forget/prob": "lower", "retain/prob": "higher"}
RECOVERY = "probe/relearn/forget/prob_recovery"
NUM = r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?"
VALUE = rf"(?P<mean>{NUM})(?: \[(?P<low>{NUM}), (?P<high>{NUM})\])?"


def _curve_rows(rng: np.random.Generator, bump: float) -> list[dict[str, float]]:
    rows = []
    for t in TS:
        dip = bump * math.sin(math.pi * t)
        rows.append(
            {
                "t": t,
                "model_utility": 0.6 - dip + rng.normal(0, 0.01),  # a barrier: utility drops inside
                "forget/prob": 0.2 - 0.5 * dip + rng.normal(0, 0.005),  # an interior point forgets more
                "retain/prob": 0.8 + rng.normal(0, 0.02),
                RECOVERY: (0.1 + rng.normal(0, 0.02)) if t in (0.0, 0.5, 1.0) else math.nan,
            }
        )
    return rows


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs") / "seeded"
    rng = np.random.default_rng(0)
    replicas = {seed: f"methods-s{seed}" for seed in (0, 1, 2)}
    curves = {name: _curve_rows(rng, 0.1) for name in replicas.values()}
    curves["solo"] = _curve_rows(rng, 0.005)
    for name, rows in curves.items():
        folder = root / "curves" / name
        folder.mkdir(parents=True)
        write_csv(folder / "curve_metrics.csv", list(rows[0]), rows)
    nodes = {"base": 0, "oracle": 0, **{f"gd-s{s}": s for s in (0, 1, 2)}, **{f"npo-s{s}": s for s in (0, 1, 2)}}
    for name, seed in nodes.items():
        folder = root / name if name in ("base", "oracle") else root / "endpoints" / name
        folder.mkdir(parents=True)
        aggregates = {"model_utility": 0.6 + 0.01 * seed, "forget/prob": 0.2 - 0.01 * seed, "retain/prob": 0.8}
        (folder / "test_metrics.json").write_text(json.dumps({"aggregates": aggregates, "directions": DIRECTIONS}))
    specs = [{"name": n, "endpoints": [f"gd-s{s}", f"npo-s{s}"], "seed": s} for s, n in replicas.items()]
    specs.append({"name": "solo", "endpoints": ["gd-s0", "base"], "seed": 0})
    groups = {
        "curves": {"methods": {str(s): n for s, n in replicas.items()}},
        "endpoints": {e: {str(s): f"{e}-s{s}" for s in (0, 1, 2)} for e in ("gd", "npo")},
    }
    (root / "study.json").write_text(json.dumps({"name": "seeded", "curves": specs, "seed_groups": groups}))
    write_report(root)
    return root


def _findings(root: Path) -> list[str]:
    text = (root / "report" / "summary.md").read_text()
    section = text.split("## Findings", 1)[1].split("\n## ", 1)[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


def _tables(root: Path, curve: str) -> list[list[dict[str, float]]]:
    names = [f"methods-s{s}" for s in (0, 1, 2)] if curve == "methods" else [curve]
    return [read_csv(root / "curves" / name / "curve_metrics.csv")[1] for name in names]


def _expected(values: list[float]) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, math.nan, math.nan
    if np.std(values) == 0:  # no spread: the interval is the point
        return mean, mean, mean
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, low, high


def _check(match: re.Match, values: list[float]) -> tuple[float, float, float]:
    mean, low, high = _expected(values)
    assert float(match["mean"]) == pytest.approx(mean, rel=6e-3, abs=1e-9)
    if math.isnan(low):
        assert match["low"] is None
    else:
        assert float(match["low"]) == pytest.approx(low, rel=6e-3, abs=1e-9)
        assert float(match["high"]) == pytest.approx(high, rel=6e-3, abs=1e-9)
    return mean, low, high


def _oriented(rows: list[dict[str, float]], metric: str) -> np.ndarray:
    m = np.array([row[metric] for row in rows])
    return -m if DIRECTIONS[metric] == "higher" else m


def test_the_summary_opens_with_findings_then_a_headline_table(study: Path) -> None:
    text = (study / "report" / "summary.md").read_text()
    assert text.index("## Findings") < text.index("## Headline metrics") < text.index("## Endpoints, base and oracle")
    headline = text.split("## Headline metrics", 1)[1].split("\n## ", 1)[0]
    rows = [
        line for line in headline.splitlines() if line.startswith("| ") and not line.startswith(("| metric", "| ---"))
    ]
    # the three metrics every node reports, one row each, in the report's headline order
    assert [row.split("|")[1].split()[0] for row in rows] == ["model_utility", "forget/prob", "retain/prob"]
    assert "| metric | base | oracle | gd (3 seeds) | npo (3 seeds) |" in headline
    utility = [0.6 + 0.01 * s for s in (0, 1, 2)]
    mean, low, high = _expected(utility)
    assert f"{mean:.3g} [{low:.3g}, {high:.3g}]" in headline  # gd's model_utility over its seeds
    assert "## Curve `methods` over seeds (gd -> npo)" in text
    assert (study / "report" / "methods.png").read_bytes()[:4] == b"\x89PNG"
    assert (study / "report" / "methods" / "curve_metrics_seeds.csv").is_file()


def test_every_barrier_sentence_matches_the_curves(study: Path) -> None:
    clause = re.compile(rf"on (?P<metric>\S+) {VALUE} at t = (?P<t>{NUM}) \((?P<verdict>[^)]*)\)")
    checked = 0
    for sentence in _findings(study):
        head = re.match(r"`(?P<curve>[^`]+)` \((?P<pair>[^,]+), (?P<runs>[^)]+)\): barrier ", sentence)
        if head is None:
            continue
        tables = _tables(study, head["curve"])
        assert head["runs"] == ("3 seeds" if head["curve"] == "methods" else "one run, no intervals")
        for match in clause.finditer(sentence):
            metric = match["metric"]
            barriers, peaks = [], []
            for rows in tables:
                m, t = _oriented(rows, metric), np.array(TS)
                excess = m - max(m[0], m[-1])
                barriers.append(float(excess.max()))
                peaks.append(float(t[int(np.argmax(excess))]))
            mean, low, high = _check(match, barriers)
            assert float(match["t"]) == pytest.approx(np.mean(peaks), rel=6e-3)
            verdict = match["verdict"]
            if math.isnan(low):
                assert verdict.startswith("below" if mean < BARRIER_TOLERANCE else "at or above")
            elif high < BARRIER_TOLERANCE:
                assert verdict.startswith("barrier-free")
            elif low > BARRIER_TOLERANCE:
                assert verdict.startswith("a barrier")
            else:
                assert verdict.startswith("undecided")
            checked += 1
    assert checked >= 4  # model_utility and forget/prob (at least) on both curves


def test_every_beats_sentence_matches_the_curves(study: Path) -> None:
    clause = re.compile(
        rf"(?P<what>beats|does not beat|undecided whether it beats) both endpoints on (?P<metric>\S+) \(margin {VALUE} "
        rf"at t = (?P<t>{NUM}), (?P<k>\d+) of (?P<n>\d+) seeds?\)"
    )
    checked = 0
    for sentence in _findings(study):
        head = re.match(r"`(?P<curve>[^`]+)`, best interior point: ", sentence)
        if head is None:
            continue
        tables = _tables(study, head["curve"])
        for match in clause.finditer(sentence):
            margins = []
            for rows in tables:
                m = _oriented(rows, match["metric"])  # lower is better
                margins.append(float(min(m[0], m[-1]) - m[1:-1].min()))
            _, low, high = _check(match, margins)
            assert int(match["k"]) == sum(margin > 0 for margin in margins) and int(match["n"]) == len(tables)
            if math.isnan(low):
                assert match["what"] == ("beats" if margins[0] > 0 else "does not beat")
            else:
                expected = "beats" if low > 0 else "does not beat" if high <= 0 else "undecided whether it beats"
                assert match["what"] == expected
            checked += 1
    assert checked >= 4


def test_every_robustness_sentence_matches_the_curves(study: Path) -> None:
    point = re.compile(rf"{VALUE} at t = (?P<t>{NUM})")
    checked = 0
    for sentence in _findings(study):
        head = re.match(r"`(?P<curve>[^`]+)`, probe `relearn`: forget/prob recovers by (?P<rest>.*)", sentence)
        if head is None:
            continue
        tables = _tables(study, head["curve"])
        for match in point.finditer(head["rest"]):
            i = TS.index(float(match["t"]))
            _check(match, [rows[i][RECOVERY] for rows in tables])
            checked += 1
    assert checked == 6  # t = 0, 0.5, 1 on both curves
