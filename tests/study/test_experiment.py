"""``mcu experiment`` end to end on a reduced quickstart: stages, skipping on rerun, the report and its rebuild.

The study runs twice in one fixture, as a user would after an interruption: first ``--only`` the oracle, base
and endpoint stages, then the whole study, which must skip what is complete and finish the curves.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcu_lightning.cli import main

pytestmark = pytest.mark.slow

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart" / "experiment.yaml"
EVAL_TS = 3
MODEL_STAGES = ("oracle", "base", "graddiff", "npo")
CURVES = ("graddiff-npo", "base-graddiff")


def adamw(lr: float) -> dict[str, Any]:
    return {"class_path": "torch.optim.AdamW", "init_args": {"lr": lr}}


def reduced_study(tmp_path: Path) -> Path:
    """The quickstart YAML with a smaller model, fewer epochs and steps, two curves and 3 points per curve."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["output_dir"] = str(tmp_path / "runs")
    raw["base"]["model"]["init_args"].update(hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    raw["base"]["train"] = {"max_epochs": 6, "optimizer": adamw(0.01)}
    # the oracle only has to be a retain-trained model: fewer epochs, same architecture
    raw["oracle"].update(model=raw["base"]["model"], train={"max_epochs": 3, "optimizer": adamw(0.01)})
    for endpoint in raw["endpoints"]:
        endpoint["train"] = {"max_epochs": 3, "optimizer": adamw(3e-3)}
    raw["curves"] = [c for c in raw["curves"] if c["name"] in CURVES]
    for curve in raw["curves"]:
        curve["train"] = {"max_steps": 4, "optimizer": adamw(1e-3)}
    raw["evaluation"]["eval_ts"] = EVAL_TS
    raw["evaluation"]["suite"]["init_args"]["max_new_tokens"] = 8
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _markers(root: Path) -> dict[str, tuple[int, bytes]]:
    folders = {
        "oracle": root / "oracle",
        "base": root / "base",
        **{n: root / "endpoints" / n for n in MODEL_STAGES[2:]},
    }
    return {
        name: ((f / "stage.json").stat().st_mtime_ns, (f / "stage.json").read_bytes()) for name, f in folders.items()
    }


def _rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _aggregates(path: Path) -> dict[str, float]:
    return {k: float("nan") if v is None else v for k, v in json.loads(path.read_text())["aggregates"].items()}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("study")
    config = reduced_study(tmp_path)
    root = tmp_path / "runs" / "quickstart"
    main(["experiment", "--config", str(config), "--progress", "false", "--only", f"[{','.join(MODEL_STAGES)}]"])
    after_first = {
        "markers": _markers(root),
        "curves": sorted(p.name for p in (root / "curves").iterdir()) if (root / "curves").exists() else [],
    }
    main(["experiment", "--config", str(config), "--progress", "false"])
    return {"root": root, "first": after_first}


def test_first_run_stops_after_the_endpoints(study: dict[str, Any]) -> None:
    assert set(study["first"]["markers"]) == set(MODEL_STAGES)
    assert study["first"]["curves"] == [], "--only without the curves must not start them"


def test_rerun_skips_complete_stages_and_completes_the_curves(study: dict[str, Any]) -> None:
    root = study["root"]
    assert _markers(root) == study["first"]["markers"], "a complete stage was rerun"
    for name in CURVES:
        marker = json.loads((root / "curves" / name / "stage.json").read_text())
        assert marker["stage"] == name and marker["kind"] == "curve" and marker["seconds"] > 0


def test_report_files(study: dict[str, Any]) -> None:
    report = study["root"] / "report"
    summary = (report / "summary.md").read_text()
    for name in CURVES:
        png = report / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (report / name / "curve_metrics.csv").is_file()
        assert f"## Curve `{name}`" in summary
    assert (report / "curves_comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "| metric | base | oracle | graddiff | npo |" in summary.splitlines()  # the endpoints table
    assert "| forget_quality ↑ |" in summary and "barrier vs line" in summary
    assert "| forget/loss ↑ |" in summary and "| holdout/loss · |" in summary  # the unlearning directions
    assert "Fitted on the retain NLL (`objective: retain_nll`) at theta(t), t ~ Uniform()." in summary
    for name in CURVES:  # "beats both endpoints" on forget/loss means a HIGHER forget loss inside, never a lower one
        barrier = json.loads((study["root"] / "curves" / name / "barrier_summary.json").read_text())["metrics"]
        rows = _rows(report / name / "curve_metrics.csv")
        forget = [row["forget/loss"] for row in rows]
        assert barrier["forget/loss"]["direction"] == "higher"
        assert barrier["forget/loss"]["interior_beats_endpoints"] == (max(forget[1:-1]) > max(forget[0], forget[-1]))
        assert (
            barrier["holdout/loss"]["direction"] == "none" and not barrier["holdout/loss"]["interior_beats_endpoints"]
        )


def test_curve_csv_shape_and_endpoint_rows(study: dict[str, Any]) -> None:
    root = study["root"]
    for name, (start, end) in {"graddiff-npo": ("graddiff", "npo"), "base-graddiff": ("base", "graddiff")}.items():
        rows = _rows(root / "report" / name / "curve_metrics.csv")
        assert [row["t"] for row in rows] == pytest.approx([0.0, 0.5, 1.0])
        assert {"forget/prob", "retain/prob", "forget/loss", "model_utility", "forget_quality"} <= set(rows[0])
        for row, node in ((rows[0], start), (rows[-1], end)):
            folder = root / node if node == "base" else root / "endpoints" / node
            own = _aggregates(folder / "test_metrics.json")
            shared = sorted(set(own) & set(row))
            assert len(shared) >= 10
            for metric in shared:
                if math.isnan(own[metric]):
                    assert math.isnan(row[metric]), f"{name} {node} {metric}"
                else:
                    assert row[metric] == pytest.approx(own[metric], rel=1e-5, abs=1e-6), f"{name} {node} {metric}"


def test_unlearning_happened(study: dict[str, Any]) -> None:
    root = study["root"]
    base = _aggregates(root / "base" / "test_metrics.json")
    oracle = _aggregates(root / "oracle" / "test_metrics.json")
    assert base["forget/prob"] > oracle["forget/prob"], "the base model saw the forget set, the oracle did not"
    for endpoint in ("graddiff", "npo"):
        values = _aggregates(root / "endpoints" / endpoint / "test_metrics.json")
        assert values["forget/prob"] < 0.8 * base["forget/prob"], (endpoint, values["forget/prob"], base["forget/prob"])
        assert 0.0 <= values["forget_quality"] <= 1.0


def test_probes_run_at_the_endpoints_of_each_curve_and_at_every_stage(study: dict[str, Any]) -> None:
    """The quickstart's probes (relearning, 4-bit weights at every 5th t, distance at every t) on a 3-point grid."""
    root = study["root"]
    rows = _rows(root / "report" / "graddiff-npo" / "curve_metrics.csv")
    relearn = [row["probe/relearn/forget/prob_recovery"] for row in rows]
    assert not math.isnan(relearn[0]) and math.isnan(relearn[1]) and not math.isnan(relearn[2])
    assert all(not math.isnan(row["probe/distance/l2_end0"]) for row in rows)
    assert "probe/quant4/forget/prob_recovery" in rows[0]
    for endpoint in ("graddiff", "npo"):
        values = _aggregates(root / "endpoints" / endpoint / "test_metrics.json")
        assert values["probe/relearn/forget/prob_recovery"] > 0, "relearning on the forget set brings some of it back"
    assert "Most robust under `relearn`" in (root / "report" / "summary.md").read_text()


def test_report_rebuilds_from_saved_metrics_without_models(study: dict[str, Any], monkeypatch: Any) -> None:
    root = study["root"]
    report = root / "report"
    before = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    shutil.rmtree(report)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("mcu report must not load a model or build a Trainer")

    monkeypatch.setattr("mcu_lightning.models.io.load_model", refuse)
    monkeypatch.setattr("lightning.pytorch.Trainer.__init__", refuse)
    main(["report", str(root)])
    after = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    assert set(after) == set(before)
    assert after[Path("summary.md")] == before[Path("summary.md")]
    for name in CURVES:
        assert after[Path(name) / "curve_metrics.csv"] == before[Path(name) / "curve_metrics.csv"]
