"""Unbounded work is stated and refused up front: the evaluation's cost in suite passes, ``--yes`` above the bound;
a data file whose rows repeat is named with the count before anything trains."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

from mcu_lightning.cli import main
from mcu_lightning.data.qa.fictitious import generate_fictitious, write_splits
from mcu_lightning.data.qa.tofu import check_json_lines
from mcu_lightning.study.cost import MAX_PASSES
from mcu_lightning.study.runner import StudyRunner
from mcu_lightning.study.schema import parse_study

STUDY = Path(__file__).resolve().parents[2] / "configs" / "quickstart" / "classification.yaml"


def study_with(tmp_path: Path, eval_ts: int) -> Path:
    raw = yaml.safe_load(STUDY.read_text())
    raw["output_dir"] = str(tmp_path / "runs")
    raw["evaluation"]["eval_ts"] = eval_ts
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_an_evaluation_above_the_bound_is_refused_with_its_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = study_with(tmp_path, eval_ts=100_000)
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "--config", str(config), "--progress", "false"])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    # digits: forget, retain, test; base, oracle, five endpoints; four curves of 100000 points
    assert "3 splits x (7 models + 400000 curve points) = 1200021 suite passes" in lines[0]
    assert f"above the {MAX_PASSES}" in lines[0] and "--yes" in lines[0] and "eval_ts" in lines[0]
    assert not (tmp_path / "runs").exists(), "nothing may run or be written"


def test_yes_accepts_it_and_the_shipped_size_passes_unasked(tmp_path: Path) -> None:
    study, _ = parse_study(["--config", str(study_with(tmp_path, eval_ts=100_000))])
    assert StudyRunner(study, yes=True).cost.passes == 3 * (7 + 4 * 100_000)
    study, _ = parse_study(["--config", str(STUDY)])
    cost = StudyRunner(study).cost
    assert cost.passes == 3 * (7 + 4 * 11) and cost.line().startswith("3 splits x (7 models + 44 curve points)")


def test_repeated_rows_of_a_data_file_are_counted(tmp_path: Path) -> None:
    write_splits(generate_fictitious(seed=0, num_people=10), tmp_path)
    path = tmp_path / "forget01.json"
    rows = path.read_text().splitlines()
    path.write_text("".join(f"{row}\n{row}\n" for row in rows))  # every line doubled
    with pytest.warns(
        UserWarning, match=rf"{len(rows)} row\(s\) repeat an earlier row exactly \(line 2 repeats line 1\)"
    ):
        check_json_lines(path, "forget01")
    retain = tmp_path / "retain99.json"
    assert len({json.dumps(json.loads(r), sort_keys=True) for r in retain.read_text().splitlines()}) > 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_json_lines(retain, "retain99")  # no repeats: no warning
