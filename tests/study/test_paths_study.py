"""``mcu experiment`` with what a curve finds: training-free paths, merges, ensembles, the plane, export_best.

A reduced ``configs/quickstart/paths.yaml`` (the reduced quickstart's base, oracle and endpoints) runs once; the
tests read its folders and ``summary.md``, then rerun it (every stage skipped) and feed it bad specs.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mcu_lightning.cli import main
from tests.study.test_experiment import adamw, reduced_study

pytestmark = pytest.mark.slow

PATHS = Path(__file__).resolve().parents[2] / "configs" / "quickstart" / "paths.yaml"
EVAL_TS = 5
GRID = 3


def paths_study(tmp_path: Path) -> Path:
    raw = yaml.safe_load(reduced_study(tmp_path).read_text())
    spec = yaml.safe_load(PATHS.read_text())
    raw["name"] = "paths"
    raw["curves"], raw["merges"] = spec["curves"], spec["merges"]
    trained = raw["curves"][0]
    trained["train"] = {"max_steps": 4, "optimizer": adamw(1e-3)}
    trained["plane"] = {"points": GRID, "metrics": ["forget_quality", "retain/loss"]}
    raw["evaluation"] = {**raw["evaluation"], "eval_ts": EVAL_TS, "probes": []}
    path = tmp_path / "paths.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _aggregates(path: Path) -> dict[str, float]:
    return {k: math.nan if v is None else v for k, v in json.loads(path.read_text())["aggregates"].items()}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("paths")
    config = paths_study(tmp_path)
    main(["experiment", "--config", str(config), "--progress", "false"])
    return {"root": tmp_path / "runs" / "paths", "config": config, "tmp": tmp_path}


@pytest.mark.parametrize("name", ["line", "slerp", "through-base"])
def test_a_path_is_tested_without_training_and_passes_through_the_endpoints(study: dict[str, Any], name: str) -> None:
    root = study["root"]
    folder = root / "curves" / name
    assert not (folder / "checkpoints").exists() or not any((folder / "checkpoints").iterdir())
    rows = _rows(folder / "curve_metrics.csv")
    assert [row["t"] for row in rows] == [i / (EVAL_TS - 1) for i in range(EVAL_TS)]
    for row, endpoint in ((rows[0], "graddiff"), (rows[-1], "npo")):
        expected = _aggregates(root / "endpoints" / endpoint / "test_metrics.json")
        for metric in ("forget/loss", "retain/loss", "forget/prob"):
            assert row[metric] == pytest.approx(expected[metric], rel=1e-4, abs=1e-6)
    assert (folder / "barrier_summary.json").is_file()


def test_the_path_through_the_base_is_the_base_at_its_middle(study: dict[str, Any]) -> None:
    root = study["root"]
    middle = _rows(root / "curves" / "through-base" / "curve_metrics.csv")[EVAL_TS // 2]
    base = _aggregates(root / "base" / "test_metrics.json")
    assert middle["forget/loss"] == pytest.approx(base["forget/loss"], rel=1e-4, abs=1e-6)


def test_merges_and_ensembles_are_rows_of_the_endpoint_table(study: dict[str, Any]) -> None:
    root = study["root"]
    summary = (root / "report" / "summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| metric | base"))
    for label in ("merge task-arithmetic", "merge ties", "graddiff-npo ensemble k3", "graddiff-npo ensemble interior"):
        assert f" {label} |" in header
    for folder in (root / "merges" / "task-arithmetic", root / "curves" / "graddiff-npo" / "ensemble-k3"):
        assert math.isfinite(_aggregates(folder / "test_metrics.json")["forget/loss"])
    members = json.loads((root / "curves" / "graddiff-npo" / "ensemble-interior" / "members.json").read_text())
    assert members["ts"] == [0.25, 0.5, 0.75]


def test_the_plane_has_a_row_per_grid_point_and_a_figure_per_metric(study: dict[str, Any]) -> None:
    root = study["root"]
    plane = root / "curves" / "graddiff-npo" / "plane"
    rows = _rows(plane / "plane_metrics.csv")
    assert len(rows) == GRID * GRID and set(rows[0]) == {"grid_x", "grid_y", "forget_quality", "retain/loss"}
    assert (plane / "plane_forget_quality.png").is_file() and (plane / "plane_retain_loss.png").is_file()
    assert (root / "report" / "graddiff-npo" / "plane_retain_loss.png").is_file()
    assert "graddiff-npo/plane_retain_loss.png" in (root / "report" / "summary.md").read_text()


def test_export_best_writes_the_best_interior_point_and_says_so(study: dict[str, Any]) -> None:
    from mcu_lightning.core.forward import call_model
    from mcu_lightning.models.io import load_model
    from mcu_lightning.modules.export import load_curve_checkpoint

    root = study["root"]
    folder = root / "curves" / "graddiff-npo"
    best = json.loads((folder / "best-model_utility" / "best.json").read_text())
    interior = [row for row in _rows(folder / "curve_metrics.csv") if 0 < row["t"] < 1]
    assert best["value"] == pytest.approx(max(row["model_utility"] for row in interior))
    assert best["t"] in [row["t"] for row in interior]
    exported = load_model(str(folder / "best-model_utility" / "model")).eval()
    module, _ = load_curve_checkpoint(folder / "checkpoints" / "last.ckpt")
    batch = {"input_ids": torch.tensor([[2, 5, 6, 7, 8]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with torch.no_grad():
        assert torch.allclose(call_model(exported, batch), call_model(module.model_at(best["t"]), batch), atol=1e-5)
    summary = (root / "report" / "summary.md").read_text()
    assert f"Best interior by model_utility (higher): t={best['t']:.4g}" in summary


def test_a_rerun_skips_every_stage(study: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    markers = {p: p.read_bytes() for p in study["root"].glob("**/stage.json")}
    assert len(markers) == 14
    main(["experiment", "--config", str(study["config"]), "--progress", "false"])
    assert {p: p.read_bytes() for p in study["root"].glob("**/stage.json")} == markers


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw["merges"][0].update(method="average"), "method"),
        (lambda raw: raw["curves"][1].update(plane={"points": 3, "metrics": ["retain/loss"]}), "plane"),
        (lambda raw: raw["curves"][0].update(export_best=["no_such_metric"]), "no_such_metric"),
    ],
)
def test_bad_uses_are_refused_before_any_stage(study: dict[str, Any], edit: Any, message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    raw = yaml.safe_load(study["config"].read_text())
    raw["output_dir"] = str(tmp_path / "runs")
    edit(raw)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "--config", str(config), "--progress", "false"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "runs" / "paths" / "oracle").exists()
