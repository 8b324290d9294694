"""A study's ``evaluation.suite`` names the reference attack's model by node: ``oracle`` or ``base``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mcu_lightning.core.errors import InputError
from mcu_lightning.study.runner import StudyRunner
from mcu_lightning.study.schema import parse_study

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart" / "experiment.yaml"

pytestmark = pytest.mark.slow  # parses the quickstart YAML and builds its suite (imports torch and lightning)


def runner_with_reference(tmp_path: Path, node: str, base_path: str | None = None) -> StudyRunner:
    study = parse_study(["--config", str(QUICKSTART), "--output_dir", str(tmp_path), "--progress", "false"])[0]
    study.evaluation.suite["init_args"].update(mia_attacks=["min_k", "reference"], reference_model=node)
    if base_path is not None:
        study = dataclasses.replace(study, base=dataclasses.replace(study.base, path=base_path))
    return StudyRunner(study)


def test_reference_model_oracle_is_the_oracle_model(tmp_path: Path) -> None:
    runner = runner_with_reference(tmp_path, "oracle")
    for with_oracle in (True, False):  # every stage, the oracle's own test included
        assert runner.context.suite(with_oracle).reference_model == runner.context.model_path("oracle")


def test_reference_model_base_needs_an_existing_base(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"reference_model: base needs base\.path"):
        runner_with_reference(tmp_path, "base")  # the oracle is tested before the study trains the base
    (tmp_path / "my_base").mkdir()
    runner = runner_with_reference(tmp_path, "base", base_path=str(tmp_path / "my_base"))
    assert runner.context.suite(True).reference_model == str(tmp_path / "my_base")
