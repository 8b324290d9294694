"""Every shipped study config runs: its plan records as JSON, and the offline ones run end to end with ``--smoke``.

``configs/quickstart/paper.yaml`` once parsed fine and crashed after five minutes, when the curriculum endpoint's
record (a ``LinearPacing`` built from its nested class spec) reached ``json.dumps``. The fast tests record every
stage of every study config (the TOFU and MU-Bench ones included, which need Hub models to run); the slow ones run
each offline study (``configs/quickstart``) through ``mcu experiment --smoke`` (2 steps a training, 3 t a curve).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from mcu_lightning.cli import main
from mcu_lightning.study.runner import StudyRunner
from mcu_lightning.study.schema import parse_study
from mcu_lightning.study.smoke import EVAL_TS, STEPS, smoke

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _is_study(path: Path) -> bool:
    raw = yaml.safe_load(path.read_text())
    return isinstance(raw, dict) and "name" in raw and "endpoints" in raw


STUDIES = sorted(p for p in CONFIGS.rglob("*.yaml") if _is_study(p))
#: paper_forget01/05.yaml differ from paper.yaml only in name and forget split (checked below), so paper.yaml runs
#: for the three: each run is ~40 s on 2 idle cores, mostly curve tests.
SAME_AS_PAPER = ("paper_forget01.yaml", "paper_forget05.yaml")
OFFLINE = [p for p in STUDIES if p.parent.name == "quickstart" and p.name not in SAME_AS_PAPER]


def _id(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


def test_the_shipped_studies_are_found() -> None:
    names = {_id(p) for p in STUDIES}
    assert {"quickstart/experiment.yaml", "quickstart/paper.yaml", "quickstart/paths.yaml"} <= names
    assert any(n.startswith("tofu/") for n in names) and any(n.startswith("mubench/") for n in names)


@pytest.mark.parametrize("path", STUDIES, ids=_id)
def test_every_stage_of_a_shipped_study_records_as_json(path: Path, tmp_path: Path) -> None:
    """What the runner writes before a stage runs (``study.json``, each stage's record) is plain JSON: class specs
    nested in free-form fields (a curriculum's ``pacing``) stay specs, never built objects."""
    study, _ = parse_study(["--config", str(path), "--output_dir", str(tmp_path)])
    json.dumps(asdict(study))
    runner = StudyRunner(study)
    records = runner.identities(runner.plan())
    for name, record in records.items():
        json.dumps(record.fields()), name


def test_a_nested_class_spec_stays_a_spec() -> None:
    study, _ = parse_study(["--config", str(CONFIGS / "quickstart" / "paper.yaml")])
    (curriculum,) = [e.curriculum for e in study.endpoints if e.curriculum]
    assert curriculum["pacing"] == {
        "class_path": "mcu_lightning.data.samplers.LinearPacing",
        "init_args": {"start_fraction": 0.5, "full_at_epoch": 3},
    }


def test_smoke_cuts_every_stage_and_keeps_the_plan(tmp_path: Path) -> None:
    path = CONFIGS / "quickstart" / "experiment.yaml"
    full, _ = parse_study(["--config", str(path), "--output_dir", str(tmp_path)])
    cut = smoke(full)  # what `mcu experiment --smoke` runs
    trainings = [cut.base.train, cut.oracle.train, *(e.train for e in cut.endpoints), *(c.train for c in cut.curves)]
    assert all(t.max_steps == STEPS and t.max_epochs is None for t in trainings)
    assert cut.evaluation.eval_ts == EVAL_TS and full.evaluation.eval_ts > EVAL_TS
    assert cut.evaluation.suite["init_args"]["max_new_tokens"] < full.evaluation.suite["init_args"]["max_new_tokens"]
    (relearn,) = [p for p in cut.evaluation.probes if p["class_path"].endswith("Relearn")]
    assert relearn["init_args"]["steps"] == STEPS
    names = [s.name for s in StudyRunner(cut).plan()]
    assert names == [s.name for s in StudyRunner(full).plan()]


@pytest.mark.parametrize("name", SAME_AS_PAPER)
def test_the_other_paper_grids_differ_from_paper_yaml_only_in_name_and_split(name: str) -> None:
    paper = yaml.safe_load((CONFIGS / "quickstart" / "paper.yaml").read_text())
    other = yaml.safe_load((CONFIGS / "quickstart" / name).read_text())
    for raw in (paper, other):
        del raw["name"], raw["data"]["init_args"]["forget_split"]
    assert other == paper


@pytest.mark.slow
@pytest.mark.parametrize("path", OFFLINE, ids=_id)
def test_a_shipped_study_runs_end_to_end_at_reduced_size(path: Path, tmp_path: Path) -> None:
    main(["experiment", "--config", str(path), "--smoke", "--output_dir", str(tmp_path), "--progress", "false"])
    study, _ = parse_study(["--config", str(path), "--output_dir", str(tmp_path)])
    runner = StudyRunner(study)
    for stage in runner.plan():
        assert stage.marker.is_file(), f"{stage.label} did not complete"
    assert (runner.root / "report" / "summary.md").is_file()
