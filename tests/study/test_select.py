"""``select: best`` on a study endpoint: the endpoint is the checkpoint best by its during-training score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_experiment import reduced_study

from mcu_lightning.cli import main


def _with_select(tmp_path: Path, during: dict | None) -> Path:
    path = reduced_study(tmp_path)
    raw = yaml.safe_load(path.read_text())
    endpoint = next(e for e in raw["endpoints"] if e["name"] == "graddiff")
    endpoint["select"] = "best"
    if during is not None:
        endpoint["during_training"] = during
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_select_best_needs_during_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = _with_select(tmp_path, None)
    with pytest.raises(SystemExit):  # refused up front, one line, before any stage runs
        main(["experiment", "--config", str(config), "--progress", "false", "--only", "[oracle]"])
    assert "endpoint 'graddiff': select: best needs during_training" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "quickstart" / "oracle").exists()


@pytest.mark.slow
def test_select_best_endpoint_is_the_best_checkpoint(tmp_path: Path) -> None:
    # GradDiff raises the forget loss every epoch: the lowest-forget-loss epoch (mode min) is not the last
    config = _with_select(tmp_path, {"score": {"forget/loss": 1.0}, "mode": "min", "every_n_epochs": 1})
    main(["experiment", "--config", str(config), "--progress", "false", "--only", "[oracle,base,graddiff]"])
    folder = tmp_path / "runs" / "quickstart" / "endpoints" / "graddiff"
    history = json.loads((folder / "during_training.json").read_text())
    scores = [entry["score"] for entry in history["history"]]
    assert len(scores) == 3 and history["best"]["epoch"] == scores.index(min(scores)) != 2
    test = json.loads((folder / "test_metrics.json").read_text())["aggregates"]
    # the endpoint's own test ran on the selected weights: the same forget loss the selection saw
    assert test["forget/loss"] == pytest.approx(history["best"]["aggregates"]["forget/loss"], rel=1e-6)
    assert test["forget/loss"] < history["history"][-1]["aggregates"]["forget/loss"]
