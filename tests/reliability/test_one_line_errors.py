"""Parser rejections and empty configs are one line naming the problem and the fix, never jsonargparse's usage dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcu_lightning.cli import main
from tests.reliability.helpers import CONFIGS

STUDY = Path(__file__).resolve().parents[2] / "configs" / "quickstart" / "classification.yaml"


def only_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``mcu ARGS`` exits 2 and writes exactly one line on stderr (no usage lines before it); returns it."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("command", ["experiment", "fit"])
def test_an_empty_config_file_is_named(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    line = only_line([command, "--config", str(empty)], capsys)
    assert f"config file '{empty}' is empty" in line and "key: value" in line


def test_a_config_that_is_not_a_mapping_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- name: a\n")
    assert "holds a list, not keys and values" in only_line(["experiment", "--config", str(listed)], capsys)


def test_a_wrong_type_at_the_top_of_a_study_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(STUDY.read_text().replace("seed: 0", "seed: abc", 1))
    line = only_line(["experiment", "--config", str(config)], capsys)
    assert 'Parser key "seed"' in line and "abc" in line and "mcu experiment --help lists" in line


def test_a_wrong_type_for_fit_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["fit", "--config", str(CONFIGS / "curve_digits.yaml"), "--trainer.max_epochs", "abc"]
    line = only_line(args, capsys)
    assert '"trainer.max_epochs"' in line and "Given value: abc" in line and "mcu fit --help" in line


def test_a_report_argument_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--vector" in only_line(["report", "--vector"], capsys)
