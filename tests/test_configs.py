"""Every shipped YAML parses against its command, so a config can never rot (the litgpt test).

LightningCLI configs (``model:``/``data:``/``trainer:``) are parsed by the ``mcu`` LightningCLI without
instantiating anything (no endpoint or base-model files needed); study configs (``name:`` + ``endpoints:``)
go through ``mcu experiment``'s parser and the study runner's validation, which resolves every class path;
trainer presets parse as ``--trainer FILE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mcu_lightning.cli import MCUCLI, lightning_cli
from mcu_lightning.core.registry import resolve_class_path
from mcu_lightning.study.grid import load_studies, parse_grid
from mcu_lightning.study.runner import StudyRunner
from mcu_lightning.study.schema import Study, parse_study
from mcu_lightning.study.stages import curve_objective

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_YAML = sorted(p for p in CONFIGS.rglob("*.yaml"))
TRAINER_PRESETS = sorted((CONFIGS / "trainer").glob("*.yaml"))


def _kind(path: Path) -> str:
    data = yaml.safe_load(path.read_text())
    if path.parent.name == "trainer":
        return "trainer"
    if isinstance(data, dict) and "name" in data and "endpoints" in data:
        return "study"
    if isinstance(data, dict) and "name" in data and "contrasts" in data:
        return "grid"
    if isinstance(data, dict) and {"model", "data", "trainer"} & set(data):
        return "lightning"
    return "unknown"


LIGHTNING = [p for p in ALL_YAML if _kind(p) == "lightning"]
STUDIES = [p for p in ALL_YAML if _kind(p) == "study"]
GRIDS = [p for p in ALL_YAML if _kind(p) == "grid"]


def _id(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


class ParseOnlyCLI(MCUCLI):
    """The ``mcu`` CLI that parses (and type-checks every class_path/init_args) but builds nothing."""

    def instantiate_classes(self) -> None:
        pass


def _class_paths(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["class_path"]] if isinstance(node.get("class_path"), str) else []
        return found + [p for value in node.values() for p in _class_paths(value)]
    if isinstance(node, list):
        return [p for value in node for p in _class_paths(value)]
    return []


def test_the_globs_find_the_shipped_configs() -> None:
    assert len(ALL_YAML) >= 10, f"expected the shipped configs under {CONFIGS}, found {len(ALL_YAML)}"
    assert [_id(p) for p in ALL_YAML if _kind(p) == "unknown"] == [], "every YAML must be a known kind"
    assert len(LIGHTNING) >= 13 and len(STUDIES) >= 1 and len(GRIDS) >= 2 and len(TRAINER_PRESETS) >= 4
    methods = {p.stem.removeprefix("unlearn_") for p in (CONFIGS / "quickstart").glob("unlearn_*.yaml")}
    assert {
        "graddiff",
        "gradascent",
        "npo",
        "simnpo",
        "idkdpo",
        "randomlabel",
        "scrub",
        "badteaching",
        "salun",
        "npo_sophia",
        "graddiff_curriculum",
        "undial",
        "ceu",
        "satimp",
        "wga",
        "pdu",
    } <= methods


@pytest.mark.parametrize("path", LIGHTNING, ids=_id)
def test_lightning_config_parses(path: Path) -> None:
    cli = lightning_cli(["--config", str(path)], run=False, cli_class=ParseOnlyCLI)
    config = cli.config
    raw = yaml.safe_load(path.read_text())
    assert config.model.class_path == raw["model"]["class_path"]
    assert config.data.class_path == raw["data"]["class_path"]
    for key, value in raw.get("trainer", {}).items():
        if key in ("callbacks", "plugins", "logger", "strategy") and not isinstance(value, (str, bool)):
            parsed = config.trainer[key] if isinstance(config.trainer[key], list) else [config.trainer[key]]
            given = value if isinstance(value, list) else [value]
            assert [c.class_path for c in parsed] == [c["class_path"] for c in given], f"trainer.{key}"
            continue
        assert config.trainer[key] == value, f"trainer.{key}"
    for class_path in _class_paths(raw):  # jsonargparse resolved them; the registry must agree
        assert resolve_class_path(class_path) is not None


@pytest.mark.parametrize("path", STUDIES, ids=_id)
def test_study_config_parses_and_validates(path: Path) -> None:
    study, _ = parse_study(["--config", str(path)])
    assert isinstance(study, Study)
    raw = yaml.safe_load(path.read_text())
    assert study.name == raw["name"]
    assert [e.name for e in study.endpoints] == [e["name"] for e in raw["endpoints"]]
    assert [c.name for c in study.curves] == [c["name"] for c in raw.get("curves", [])]
    runner = StudyRunner(study)  # validate(): names, curve pairs, every class path; trains nothing
    assert not runner.root.exists() or runner.root.is_dir()
    for class_path in _class_paths(raw):
        assert resolve_class_path(class_path) is not None


@pytest.mark.parametrize("path", GRIDS, ids=_id)
def test_grid_config_expands_to_studies_that_validate(path: Path, tmp_path: Path) -> None:
    """A grid (``mcu grid``) parses, expands to a study per forget split, and each study validates as ``mcu
    experiment`` would; every curve is fitted as the authors fit theirs (own objective, clipped-normal t)."""
    grid, _ = parse_grid(["--config", str(path), "--output_dir", str(tmp_path)])
    loaded = load_studies(grid)
    assert [g.split for g, _ in loaded] == list(yaml.safe_load(path.read_text())["forget_splits"])
    for _, study in loaded:
        runner = StudyRunner(study)
        assert len(runner.study.curves) == len(grid.contrasts) * len(grid.seeds)
        for curve in runner.study.curves:
            assert curve.objective == "endpoint" and curve.t_sampler["class_path"].endswith("ClippedNormal")


@pytest.mark.parametrize("preset", TRAINER_PRESETS, ids=_id)
def test_trainer_preset_parses_as_trainer_file(preset: Path) -> None:
    digits = CONFIGS / "quickstart" / "finetune_digits.yaml"
    cli = lightning_cli(["--config", str(digits), "--trainer", str(preset)], run=False, cli_class=ParseOnlyCLI)
    raw = yaml.safe_load(preset.read_text())
    for key, value in raw.items():
        got = cli.config.trainer[key]
        if isinstance(value, dict):  # a strategy given as a class spec
            assert got.class_path == value["class_path"]
            for name, expected in value["init_args"].items():  # enums parse to members: compare by name
                assert getattr(got.init_args[name], "name", got.init_args[name]) == expected
        else:
            assert got == value, f"{preset.name}: trainer.{key}"


def test_unknown_class_path_in_a_config_is_rejected(tmp_path: Path) -> None:
    raw = yaml.safe_load((CONFIGS / "quickstart" / "unlearn_npo.yaml").read_text())
    raw["model"]["init_args"]["loss"]["class_path"] = "mcu_lightning.losses.NPOO"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as info:
        lightning_cli(["--config", str(bad)], run=False, cli_class=ParseOnlyCLI)
    assert info.value.code != 0


def test_study_runner_rejects_an_unknown_class_path_with_close_matches() -> None:
    """Studies built in Python skip the YAML parser; ``StudyRunner.validate`` still names the bad path and a fix."""
    study_yaml = next(p for p in STUDIES if p.parent.name == "quickstart")
    study, _ = parse_study(["--config", str(study_yaml)])
    study.endpoints[0].loss = {"class_path": "mcu_lightning.losses.GradDif", "init_args": {}}
    with pytest.raises(ValueError, match=r"GradDif.*did you mean.*mcu_lightning\.losses\.GradDiff"):
        StudyRunner(study)


PAPER_GRIDS = sorted(p for p in (CONFIGS / "quickstart").glob("paper*.yaml") if _kind(p) == "study")
TOFU_STUDIES = sorted((CONFIGS / "tofu").glob("experiment_*.yaml"))


@pytest.mark.parametrize("path", PAPER_GRIDS + TOFU_STUDIES, ids=_id)
def test_studies_fit_curves_as_the_authors(path: Path) -> None:
    """The paper grids and the TOFU studies fit each curve with its endpoints' own loss at clipped-normal t; a
    retain-NLL curve is a named variant of the paper grid, not its default."""
    study, _ = parse_study(["--config", str(path)])
    authors = [c for c in study.curves if c.objective == "endpoint"]
    variants = [c for c in study.curves if c.objective != "endpoint"]
    assert authors, f"{path.name}: no curve uses `objective: endpoint`"
    for curve in authors:
        assert curve.t_sampler["class_path"].endswith("ClippedNormal"), (path.name, curve.name, curve.t_sampler)
        assert curve.t_sampler["init_args"] == {"mean": 0.5, "std": 0.1}, (path.name, curve.name)
    if path in PAPER_GRIDS:
        assert [c.name for c in variants] == ["seeds-graddiff-retain-nll"], path.name
        assert variants[0].objective == "retain_nll"
    else:
        assert not variants, f"{path.name}: {[c.name for c in variants]} do not use the endpoints' objective"


def test_endpoint_objective_is_the_first_endpoints_loss_as_trained(tmp_path: Path) -> None:
    """``objective: endpoint`` builds the first endpoint's loss, SuperLoss-wrapped when that endpoint used it."""
    from mcu_lightning.losses import NLL, GradDiff, SuperLoss

    study, _ = parse_study(["--config", str(CONFIGS / "quickstart" / "paper.yaml"), "--output_dir", str(tmp_path)])
    runner = StudyRunner(study)
    curves = {curve.name: curve for curve in study.curves}
    assert type(curve_objective(runner.context, curves["seeds-graddiff"])) is GradDiff
    assert type(curve_objective(runner.context, curves["seeds-graddiff-retain-nll"])) is NLL
    curriculum = curves["curriculum"]
    curriculum.endpoints = list(reversed(curriculum.endpoints))  # first endpoint: graddiff-s0-curriculum
    objective = curve_objective(runner.context, curriculum)
    assert isinstance(objective, SuperLoss) and type(objective.loss) is GradDiff
