"""``mcu grid`` end to end on a tiny grid: a study per forget split, a curve per contrast and seed, the grid report
from their results; a second run reuses every stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcu_lightning.cli import main
from mcu_lightning.report.curve import BARRIER_JSON
from mcu_lightning.report.grid import GRID_JSON, GRID_REPORT, figure_name

pytestmark = pytest.mark.slow

GRID = Path(__file__).resolve().parents[2] / "configs" / "quickstart" / "paper_grid.yaml"
SPLITS = ("forget01", "forget05")


def adamw(lr: float) -> dict[str, Any]:
    return {"class_path": "torch.optim.AdamW", "init_args": {"lr": lr}}


def tiny_grid(tmp_path: Path) -> Path:
    """The quickstart grid on two splits and two seeds, two contrasts (one with the curriculum: its pacing is a class
    spec inside a free-form dict), a smaller model, fewer epochs and steps."""
    raw = yaml.safe_load(GRID.read_text())
    raw.update(output_dir=str(tmp_path / "runs"), seeds=[0, 1], forget_splits={split: {} for split in SPLITS})
    study = raw["study"]
    study["base"]["model"]["init_args"].update(hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    study["base"]["train"] = {"max_epochs": 2, "optimizer": adamw(0.01)}
    study["oracle"].update(model=study["base"]["model"], train={"max_epochs": 1, "optimizer": adamw(0.01)})
    study["evaluation"]["eval_ts"] = 3
    study["evaluation"]["suite"]["init_args"]["max_new_tokens"] = 4
    for method in raw["methods"].values():
        method["train"] = {"max_epochs": 1, "optimizer": adamw(3e-3)}
    raw["curve"]["train"] = {"max_steps": 2, "optimizer": adamw(1e-3)}
    raw["contrasts"] = [c for c in raw["contrasts"] if c["name"] in ("curriculum", "seeds")]
    raw["metrics"] = ["forget_quality", "forget/prob"]
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_mcu_grid_runs_a_study_per_split_and_writes_the_grid_table(tmp_path: Path, capsys) -> None:
    config = tiny_grid(tmp_path)
    main(["grid", "--config", str(config)])
    root = tmp_path / "runs" / "paper_grid"
    assert f"grid report: {root / 'report' / GRID_REPORT}" in capsys.readouterr().out
    manifest = json.loads((root / GRID_JSON).read_text())
    assert list(manifest["studies"]) == list(SPLITS)
    markers = {}
    for split in SPLITS:
        study = root / f"paper_grid_{split}"
        assert (study / "report" / "summary.md").is_file()  # each study's own report, as `mcu experiment` writes it
        for name in ("curriculum-s0", "curriculum-s1", "seeds-s0", "seeds-s1"):
            assert (study / "curves" / name / BARRIER_JSON).is_file()
        markers[split] = {p: p.stat().st_mtime_ns for p in study.glob("**/stage.json")}
        assert len(markers[split]) == 2 + 4 + 4
        assert manifest["studies"][split]["wall_seconds"] > manifest["studies"][split]["stage_seconds"] > 0
    text = (root / "report" / GRID_REPORT).read_text()
    table = text.split("## Grid table (forget_quality)\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert table[0] == "| contrast | forget01 | forget05 |"
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| curriculum: graddiff vs graddiff+curriculum",
        "| seeds: graddiff vs graddiff (next seed)",
    ]
    heights = [
        json.loads((root / "paper_grid_forget05" / "curves" / f"curriculum-s{s}" / BARRIER_JSON).read_text())[
            "metrics"
        ]["forget_quality"]["barrier_vs_max_end"]
        for s in (0, 1)
    ]
    assert table[2].split(" | ")[2].startswith(f"{sum(heights) / 2:.3g} ")  # the mean of the curves' own barriers
    assert (root / "report" / figure_name("forget/prob")).is_file()
    main(["grid", "--config", str(config)])  # a second run reuses every stage
    for split in SPLITS:
        study = root / f"paper_grid_{split}"
        assert {p: p.stat().st_mtime_ns for p in study.glob("**/stage.json")} == markers[split]
