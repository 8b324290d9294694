"""``mcu grid``'s expansion: one study per forget split, every recipe at every seed, one curve per contrast and seed,
each contrast's endpoints differing in its factor alone; bad grids stop with one line before any study is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mcu_lightning.study.grid import expand, load_studies, merge, parse_grid, recipe
from mcu_lightning.study.runner import StudyRunner
from mcu_lightning.study.schema import StudyError, endpoint_config, parse_study
from mcu_lightning.study.seeds import expand_seeds

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
QUICKSTART_GRID = CONFIGS / "quickstart" / "paper_grid.yaml"
PAPER = CONFIGS / "quickstart" / "paper.yaml"


def _grid(tmp_path: Path, path: Path = QUICKSTART_GRID, **changes: Any) -> Any:
    raw = yaml.safe_load(path.read_text())
    raw.update(output_dir=str(tmp_path / "runs"), **changes)
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return parse_grid(["--config", str(config)])[0]


def test_the_quickstart_grid_expands_to_a_study_per_split_with_every_recipe_and_contrast_at_every_seed(
    tmp_path: Path,
) -> None:
    grid = _grid(tmp_path)
    loaded = load_studies(grid)
    assert [g.split for g, _ in loaded] == ["forget01", "forget05", "forget10"]
    seeds = grid.seeds
    assert seeds == [0, 1, 2]
    recipes = ["graddiff", "npo", "graddiff+curriculum", "npo+sophia"]
    for grid_study, study in loaded:
        assert study.name == f"paper_grid_{grid_study.split}"
        assert study.data["init_args"]["forget_split"] == grid_study.split
        expanded, _ = expand_seeds(study)  # the study's seeds, as its runner expands them
        endpoints = {e.name: e for e in expanded.endpoints}
        assert sorted(endpoints) == sorted(f"{r}-s{s}" for r in recipes for s in seeds)
        assert all(endpoints[f"{r}-s{s}"].seed == s for r in recipes for s in seeds)
        curves = {c.name: c for c in expanded.curves}
        assert len(curves) == 4 * len(seeds)
        for contrast, (a, b) in {
            "methods": ("graddiff", "npo"),
            "curriculum": ("graddiff", "graddiff+curriculum"),
        }.items():
            for s in seeds:
                assert curves[f"{contrast}-s{s}"].endpoints == [f"{a}-s{s}", f"{b}-s{s}"]
                assert curves[f"{contrast}-s{s}"].seed == s
        # the seed contrast: the same recipe at the next seed, cyclically
        assert [curves[f"seeds-s{s}"].endpoints for s in seeds] == [
            ["graddiff-s0", "graddiff-s1"],
            ["graddiff-s1", "graddiff-s2"],
            ["graddiff-s2", "graddiff-s0"],
        ]
        assert grid_study.curves == {
            c: {s: f"{c}-s{s}" for s in seeds} for c in ("methods", "curriculum", "optimizer", "seeds")
        }
        assert {c.objective for c in curves.values()} == {"endpoint"} and {c.init for c in curves.values()} == {"base"}

        # each contrast's endpoints differ in its factor alone
        def diff(a: str, b: str, endpoints: dict[str, Any] = endpoints) -> set[str]:
            x, y = endpoint_config(endpoints[a]), endpoint_config(endpoints[b])
            return {k for k in x if x[k] != y[k]}

        assert diff("graddiff-s0", "npo-s0") == {"name", "loss", "train"}  # the method and its recipe's epochs
        assert diff("graddiff-s0", "graddiff+curriculum-s0") == {"name", "superloss", "curriculum"}
        assert diff("npo-s0", "npo+sophia-s0") == {"name", "train"}
        assert endpoints["npo+sophia-s0"].train.optimizer["class_path"] == "mcu_lightning.optim.SophiaG"
        assert endpoints["npo+sophia-s0"].train.max_epochs == endpoints["npo-s0"].train.max_epochs
        assert diff("graddiff-s0", "graddiff-s1") == {"name", "seed"}


def test_each_written_study_yaml_runs_alone_and_a_grid_endpoint_is_paper_yamls(tmp_path: Path) -> None:
    """The YAML under studies/ parses to the same study, and graddiff-s0 of forget10 has the fingerprint of
    paper.yaml's graddiff-s0 (so the grid and the single studies describe the same runs)."""
    grid = _grid(tmp_path)
    grid_study, study = load_studies(grid, splits=["forget10"])[0]
    written = tmp_path / "runs" / "paper_grid" / "studies" / "forget10.yaml"
    assert yaml.safe_load(written.read_text()) == grid_study.config
    alone, _ = parse_study(["--config", str(written)])
    assert [e.name for e in alone.endpoints] == [e.name for e in study.endpoints] == list(recipes_of(grid))
    paper, _ = parse_study(["--config", str(PAPER), "--output_dir", str(tmp_path / "paper")])
    grid_runner, paper_runner = StudyRunner(study), StudyRunner(paper)
    grid_ids, paper_ids = grid_runner.identities(grid_runner.plan()), paper_runner.identities(paper_runner.plan())
    assert len(grid_runner.plan()) == 2 + 12 + 12
    for stage in ("base", "oracle", "graddiff-s0", "graddiff-s1", "npo-s0"):
        assert grid_ids[stage].fingerprint == paper_ids[stage].fingerprint, stage


def recipes_of(grid: Any) -> dict[str, None]:
    return dict.fromkeys(name for contrast in grid.contrasts for name in contrast.endpoints)


def test_a_variant_merges_into_its_method_and_a_class_spec_replaces_whole() -> None:
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    old = {"optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1.0, "weight_decay": 0.1}}}
    new = {"optimizer": {"class_path": "SophiaG", "init_args": {"lr": 2.0}}}
    assert merge(old, new) == new  # AdamW's weight_decay does not leak into SophiaG's arguments


def test_the_tofu_grid_expands_with_each_splits_oracle(tmp_path: Path) -> None:
    grid = _grid(tmp_path, CONFIGS / "tofu" / "paper_grid.yaml")
    loaded = load_studies(grid)
    assert {g.split: s.oracle.path for g, s in loaded} == {
        "forget01": "open-unlearning/tofu_Llama-3.2-1B-Instruct_retain99",
        "forget05": "open-unlearning/tofu_Llama-3.2-1B-Instruct_retain95",
        "forget10": "open-unlearning/tofu_Llama-3.2-1B-Instruct_retain90",
    }
    for _, study in loaded:
        runner = StudyRunner(study)
        assert all(e.lora is not None for e in runner.study.endpoints) and len(runner.study.curves) == 12


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"contrasts": [{"name": "x", "endpoints": ["graddiff", "ga"]}]},
            r"recipe 'ga' names method 'ga'.*methods: graddiff, npo",
        ),
        ({"contrasts": [{"name": "x", "endpoints": ["npo", "npo+adam"]}]}, r"variant 'adam' that is not defined"),
        ({"contrasts": [{"name": "x", "endpoints": ["npo", "npo"]}]}, r"connects 'npo' to itself; set other_seed"),
        ({"seeds": [0]}, r"contrast 'seeds' \(other_seed\) needs at least two seeds"),
        ({"seeds": [0, 0]}, r"distinct seeds"),
        ({"forget_splits": {}}, r"forget_splits is empty"),
        ({"barrier": "vs_top"}, r"barrier='vs_top'; use one of vs_line, vs_max_end, vs_mean_end"),
    ],
    ids=["method", "variant", "self", "one-seed", "repeated-seed", "no-split", "barrier"],
)
def test_a_bad_grid_is_one_line_naming_the_fix(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(StudyError, match=message):
        _grid(tmp_path, **changes)


def test_fields_the_grid_sets_are_refused_where_written(tmp_path: Path) -> None:
    raw = yaml.safe_load(QUICKSTART_GRID.read_text())
    with pytest.raises(StudyError, match=r"study: leave out endpoints"):
        _grid(tmp_path, study={**raw["study"], "endpoints": []})
    with pytest.raises(StudyError, match=r"methods.npo: leave out seed"):
        _grid(tmp_path, methods={**raw["methods"], "npo": {**raw["methods"]["npo"], "seed": 3}})
    grid = _grid(tmp_path)
    with pytest.raises(StudyError, match=r"--splits forget50: not in the grid; its splits: forget01, forget05"):
        load_studies(grid, splits=["forget50"])
    assert recipe(grid, "npo+sophia")["loss"] == raw["methods"]["npo"]["loss"]
    assert len(expand(grid)) == 3
