"""Generated data (``data: fictitious``) is part of a stage's identity by content, like a local file: an edited
cached set makes every stage that reads it refuse to be reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcu_lightning.data.qa.fictitious import fictitious_root
from mcu_lightning.study.identity import StageRecord, data_identity
from mcu_lightning.study.runner import StudyRunner
from mcu_lightning.study.schema import parse_study

REPO = Path(__file__).resolve().parents[2]
FICTITIOUS = {"class_path": "mcu_lightning.data.QADataModule", "init_args": {"data": "fictitious"}}


def double_first_row(root: Path, split: str = "forget10") -> None:
    path = root / f"{split}.json"
    first = path.read_text().splitlines()[0]
    path.write_text(path.read_text() + first + "\n")


def test_generated_data_is_hashed_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCU_CACHE", str(tmp_path / "cache"))
    before = data_identity(FICTITIOUS)
    root = fictitious_root()
    assert set(before["generated"]) == {root.name}, "keyed by the set, not by where the cache is"
    assert before["generated"][root.name]["forget10.json"]
    double_first_row(root)
    after = data_identity(FICTITIOUS)
    changes = StageRecord("old", data=before).changes(StageRecord("new", data=after))
    assert any(line.startswith(f"data generated.{root.name}.forget10.json ") for line in changes), changes
    monkeypatch.setenv("MCU_CACHE", str(tmp_path / "elsewhere"))  # the same set generated in another cache
    assert data_identity(FICTITIOUS) == before
    digits = {"class_path": "mcu_lightning.data.ClassificationDataModule", "init_args": {"dataset": "digits"}}
    assert data_identity(digits) == {"spec": digits, "files": {}}, "other data keeps the identity it had"


@pytest.mark.slow
def test_an_edited_cached_set_stops_the_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stage of the quickstart recorded as made with the cached set; the set edited; each stage now differs."""
    monkeypatch.setenv("MCU_CACHE", str(tmp_path / "cache"))
    config = REPO / "configs" / "quickstart" / "experiment.yaml"
    study, _ = parse_study(["--config", str(config), "--output_dir", str(tmp_path / "runs"), "--progress", "false"])
    runner = StudyRunner(study)
    plan = runner.plan()
    for stage in plan:  # as `mcu experiment` leaves them once every stage ran
        stage.directory.mkdir(parents=True, exist_ok=True)
        stage.marker.write_text(json.dumps(runner.identities(plan)[stage.name].fields()))
    assert runner.changed_stages(plan, runner.identities(plan)) == ({}, {})
    double_first_row(fictitious_root())
    changed, _ = runner.changed_stages(plan, runner.identities(plan))  # (fit changed, only the test changed)
    assert set(changed) == {stage.name for stage in plan}
    assert any("data generated.fictitious-seed0-people40.forget10.json" in r for r in changed["oracle"])
