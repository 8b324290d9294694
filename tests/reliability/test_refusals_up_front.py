"""Mistakes that used to escape the study folder, or surface only when their stage started (after the base and
oracle trained) or as a traceback, are one ``error:`` line and exit status 2 before the first stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.reliability.helpers import one_error_line, run_cli
from tests.study.test_experiment import reduced_study

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """An edit setting the dotted ``path`` (list items by index) of the raw study to ``value``."""

    def edit(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[int(last) if isinstance(node, list) else last] = value

    return edit


def _edited(tmp_path: Path, edit: Edit) -> Path:
    config = reduced_study(tmp_path)
    raw = yaml.safe_load(config.read_text())
    edit(raw)
    config.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return config


def _refused(tmp_path: Path, edit: Edit, capsys: pytest.CaptureFixture[str]) -> str:
    config = _edited(tmp_path, edit)
    capsys.readouterr()
    line = one_error_line(["experiment", "--config", str(config), "--progress", "false"], capsys)
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_dir())
    assert made == [], f"folders made before the refusal: {made}"  # no stage started, nothing written anywhere
    return line


BAD_NAMES = {
    "study ../escape": ("name", "../escape", "study: the name '../escape' becomes a folder"),
    "endpoint ../../pwn": ("endpoints.0.name", "../../pwn", "endpoint '../../pwn': the name '../../pwn' becomes"),
    "curve ../x": ("curves.0.name", "../x", "curve '../x': the name '../x' becomes a folder"),
    "curve with a slash": ("curves.1.name", "a/b", "curve 'a/b': the name 'a/b' becomes a folder"),
    "empty study name": ("name", "", "study: the name '' becomes a folder"),
    "control character": ("endpoints.1.name", "np\x1bo", "the name 'np\\x1bo' becomes a folder"),
    "newline": ("curves.0.name", "a\nb", "the name 'a\\nb' becomes a folder"),
    "dot": ("name", ".", "study: the name '.' becomes a folder"),
    "too long": ("curves.0.name", "é" * 70, "is 140 bytes; a folder name needs at most 120"),
}


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_names_must_be_safe_folder_names(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, name, expected = BAD_NAMES[case]
    line = _refused(tmp_path, _set(key, name), capsys)
    assert expected in line
    assert "use letters, digits, '-', '_', '+' or '.'" in line or "bytes" in line


def test_a_name_climbing_out_is_refused_by_the_cli(tmp_path: Path) -> None:
    """The real entry point: exit 2, one line, and nothing written above the study's output folder."""
    config = _edited(tmp_path, _set("endpoints.0.name", "../../pwn"))
    result = run_cli(["experiment", "--config", str(config), "--progress", "false"], cwd=tmp_path, timeout=240)
    assert result.returncode == 2, result.stderr[-2000:]
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        "error: endpoint '../../pwn': the name '../../pwn' becomes a folder; use letters, digits, '-', '_', '+' or '.' "
        "(no '/', spaces or control characters, not starting with '.')"
    ]
    assert not (tmp_path / "pwn").exists() and not (tmp_path / "runs").exists()


def _objective_endpoint(raw: dict[str, Any]) -> None:
    raw["curves"][1].update(endpoints=["base", "oracle"], objective="endpoint")


LATE_ERRORS = {
    "loss init arg": (
        _set("endpoints.0.loss.init_args.bogus_loss_arg", 1),
        "endpoint 'graddiff' loss: Problem with given class_path 'mcu_lightning.losses.GradDiff': "
        "Option 'bogus_loss_arg' is not accepted",
    ),
    "data init arg": (_set("data.init_args.bogus_data_arg", 1), "data: Problem with given class_path"),
    "endpoint data override": (
        _set("endpoints.1.data", {"bogus_override": 2}),
        "endpoint 'npo' data: Problem with given class_path 'mcu_lightning.data.QADataModule': "
        "Option 'bogus_override' is not accepted",
    ),
    "model init arg": (
        _set("base.model.init_args.bogus_model_arg", 1),
        "base.model: Problem with given class_path 'mcu_lightning.models.tiny_causal_lm': "
        "Option 'bogus_model_arg' is not accepted",
    ),
    "optimizer init arg": (
        _set("curves.0.train.optimizer.init_args.betas_typo", 0.9),
        "curve 'graddiff-npo' train.optimizer: Problem with given class_path 'torch.optim.AdamW': "
        "Option 'betas_typo' is not accepted",
    ),
    "trainer key": (_set("trainer.max_epoch", 3), "trainer: does not accept option 'max_epoch'"),
    "eval_ts 1": (_set("evaluation.eval_ts", 1), "evaluation.eval_ts=1: a curve grid needs at least 2 points"),
    "num_bends 0": (
        _set("curves.0.shape", {"class_path": "mcu_lightning.curves.Bezier", "init_args": {"num_bends": 0}}),
        "curve 'graddiff-npo' shape: a curve needs num_bends >= 2 (its two endpoints), got 0",
    ),
    "num_bends 1": (
        _set("curves.1.shape", {"class_path": "mcu_lightning.curves.PolyChain", "init_args": {"num_bends": 1}}),
        "curve 'base-graddiff' shape: a curve needs num_bends >= 2 (its two endpoints), got 1",
    ),
    "loss value": (
        _set("endpoints.1.loss.init_args.beta", -1.0),
        "endpoint 'npo' loss: NPO: beta must be positive, got -1.0",
    ),
    "objective endpoint without one": (
        _objective_endpoint,
        "objective 'endpoint' needs an unlearning endpoint",
    ),
}


@pytest.mark.parametrize("case", list(LATE_ERRORS))
def test_mistakes_in_any_stage_are_one_line_before_the_first_stage(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, expected = LATE_ERRORS[case]
    line = _refused(tmp_path, edit, capsys)
    assert expected in line, line
    assert "usage:" not in capsys.readouterr().err  # jsonargparse's usage dump is folded into the line


def test_yaml_syntax_error_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text("name: quick\nbase:\n  model: [tiny\n  train: {}\n")
    result = run_cli(["experiment", "--config", str(config)], cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: config file '{config}' line 4 column 8 is not valid YAML: expected ',' or ']', but got ':'"
    ]
