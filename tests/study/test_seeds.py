"""``seeds:`` on a study or an endpoint: replicas per seed, curves paired by seed, group names."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcu_lightning.study.runner import StudyRunner
from mcu_lightning.study.schema import CurveSpec, Endpoint, Evaluation, Merge, ModelStage, Study, StudyError
from mcu_lightning.study.seeds import SeedGroups, expand_seeds

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart" / "experiment.yaml"
GRADDIFF = {"class_path": "mcu_lightning.losses.GradDiff"}


def study(**changes) -> Study:
    fields = {
        "name": "s",
        "data": {"class_path": "mcu_lightning.data.QADataModule"},
        "evaluation": Evaluation(suite={"class_path": "mcu_lightning.metrics.QASuite"}),
        "base": ModelStage(model={"class_path": "mcu_lightning.models.tiny_causal_lm"}),
        "endpoints": [Endpoint("gd", GRADDIFF), Endpoint("npo", GRADDIFF)],
        "curves": [CurveSpec("methods", ["gd", "npo"]), CurveSpec("base-gd", ["base", "gd"])],
    }
    return Study(**{**fields, **changes})


def test_study_seeds_replicate_endpoints_and_pair_curves_by_seed():
    expanded, groups = expand_seeds(study(seeds=[0, 2]))
    assert [(e.name, e.seed, e.seeds) for e in expanded.endpoints] == [
        ("gd-s0", 0, None),
        ("gd-s2", 2, None),
        ("npo-s0", 0, None),
        ("npo-s2", 2, None),
    ]
    curves = [(c.name, c.endpoints, c.seed) for c in expanded.curves]
    assert curves == [
        ("methods-s0", ["gd-s0", "npo-s0"], 0),
        ("methods-s2", ["gd-s2", "npo-s2"], 2),
        ("base-gd-s0", ["base", "gd-s0"], 0),
        ("base-gd-s2", ["base", "gd-s2"], 2),
    ]
    assert groups.curves == {
        "methods": {0: "methods-s0", 2: "methods-s2"},
        "base-gd": {0: "base-gd-s0", 2: "base-gd-s2"},
    }
    assert SeedGroups.from_json(groups.as_json()) == groups
    assert groups.stages("gd") == ["gd-s0", "gd-s2"] and groups.stages("base") == ["base"]


def test_endpoint_seeds_and_fixed_nodes():
    endpoints = [Endpoint("gd", GRADDIFF, seeds=[0, 1]), Endpoint("npo", GRADDIFF, seed=5)]
    curves = [
        CurveSpec("methods", ["gd", "npo"]),  # npo is unseeded: the same in both replicas
        CurveSpec("pair", ["gd-s0", "gd-s1"]),  # replicas named in full, no seeded group: one curve
    ]
    merges = [Merge("avg", ["gd", "npo"])]
    expanded, groups = expand_seeds(study(endpoints=endpoints, curves=curves, merges=merges))
    assert [e.name for e in expanded.endpoints] == ["gd-s0", "gd-s1", "npo"]
    assert [(c.name, c.endpoints) for c in expanded.curves] == [
        ("methods-s0", ["gd-s0", "npo"]),
        ("methods-s1", ["gd-s1", "npo"]),
        ("pair", ["gd-s0", "gd-s1"]),
    ]
    assert [(m.name, m.endpoints) for m in expanded.merges] == [
        ("avg-s0", ["gd-s0", "npo"]),
        ("avg-s1", ["gd-s1", "npo"]),
    ]
    assert "pair" not in groups.curves


def test_a_study_without_seeds_is_unchanged():
    plain = study()
    expanded, groups = expand_seeds(plain)
    assert expanded is plain and not groups


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": []}, "non-empty list"),
        ({"seeds": [0, 0]}, "repeats a seed"),
        ({"seeds": [-1]}, "whole numbers >= 0"),
        (
            {"endpoints": [Endpoint("gd", GRADDIFF, seeds=[0, 1]), Endpoint("npo", GRADDIFF, seeds=[0, 2])]},
            "curve 'methods' connects endpoints run with different seeds",
        ),
    ],
)
def test_bad_seeds_stop_with_one_line(changes, message):
    with pytest.raises(StudyError, match=message):
        expand_seeds(study(**changes))


@pytest.mark.slow  # parses the quickstart YAML and builds its suite (imports torch and lightning)
def test_runner_plans_one_stage_per_seed_and_shares_base_and_oracle(tmp_path: Path):
    from mcu_lightning.study.schema import parse_study

    args = ["--config", str(QUICKSTART), "--output_dir", str(tmp_path), "--progress", "false"]
    plain = StudyRunner(parse_study(args)[0])
    seeded = StudyRunner(parse_study([*args, "--seeds", "[0, 1]"])[0])
    names = [stage.name for stage in seeded.plan()]
    assert names[:6] == ["oracle", "base", "graddiff-s0", "graddiff-s1", "npo-s0", "npo-s1"]
    assert "graddiff-npo-s1" in names and "base-npo-s0" in names
    # what study.json records for the report: which stages are one curve run with several seeds
    assert seeded.seed_groups.as_json()["curves"]["graddiff-npo"] == {"0": "graddiff-npo-s0", "1": "graddiff-npo-s1"}
    plain_ids = plain.identities(plain.plan())
    seeded_ids = seeded.identities(seeded.plan())
    # the shared base and oracle are the same stages; the replicas differ by their seed (and name)
    for name in ("oracle", "base"):
        assert plain_ids[name].fingerprint == seeded_ids[name].fingerprint
    assert seeded_ids["graddiff-s0"].fingerprint != seeded_ids["graddiff-s1"].fingerprint
