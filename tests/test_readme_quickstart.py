"""The README quotes the committed quickstart run: its stage line, robustness table and figure come from
``docs/quickstart/`` (written by ``python -m benchmarks.quickstart_readme runs/quickstart``)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.quickstart_readme import DOCS, FIGURE, QUOTED_STAGE, STAGES, blocks, quoted

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_quotes_the_committed_run() -> None:
    assert (DOCS / STAGES).is_file() and FIGURE.is_file(), "commit the run's files (benchmarks/quickstart_readme.py)"
    assert quoted(README) == blocks(), "the README's quickstart blocks differ from docs/quickstart/; regenerate them"


def test_the_quoted_stage_line_carries_the_runs_numbers() -> None:
    import json

    (stage,) = [s for s in json.loads((DOCS / STAGES).read_text()) if s["stage"] == QUOTED_STAGE]
    line = quoted(README)["quickstart-line"]
    assert f"forget_quality {stage['aggregates']['forget_quality']:.4g}" in line
    assert f"model_utility {stage['aggregates']['model_utility']:.4g}" in line
