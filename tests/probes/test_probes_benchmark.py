"""Smoke test of ``benchmarks/probes.py`` at a tiny size: every probe's ratio is measured, finite and positive."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import probes as probes_benchmark
from benchmarks import report

pytestmark = pytest.mark.slow


def test_probe_benchmark_prints_a_ratio_per_probe(tmp_path, capsys) -> None:
    out = tmp_path / "probes.json"
    rows = probes_benchmark.main(
        ["--repeats", "1", "--warmup", "0", "--hidden-size", "16", "--layers", "1", "--max-new-tokens", "2",
         "--relearn-steps", "2", "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    names = {row["case"] for row in rows}
    assert names == {"relearn", "relearn_benign", "quant4", "quant8", "distance", "sharpness"}
    assert all(math.isfinite(row["ratio"]) and row["ratio"] > 0 for row in rows)
    assert all(f"{name}: ratio" in printed for name in names)
    data = json.loads(out.read_text())
    assert data["benchmark"] == "probes"
    assert "| quant4 |" in report.section("probes", data)
