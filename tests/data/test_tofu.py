from pathlib import Path

import pytest

from mcu_lightning.data.qa.tofu import (
    TOFU_CONFIGS,
    holdout_split_for,
    load_tofu_split,
    load_tofu_splits,
    perturbed_split_for,
    retain_split_for,
)

SAMPLE = Path(__file__).parents[1] / "fixtures" / "tofu_sample"  # in the repository: a fresh clone skips nothing


def test_config_names_cover_the_hub_card():
    for name in (
        "forget01",
        "forget05",
        "forget10",
        "retain99",
        "retain95",
        "retain90",
        "retain_perturbed",
        "real_authors_perturbed",
        "world_facts_perturbed",
        "holdout01",
        "holdout05",
        "holdout10",
        "full",
        "real_authors",
        "world_facts",
        "forget10_perturbed",
    ):
        assert name in TOFU_CONFIGS
    assert len(TOFU_CONFIGS) == 18


def test_derived_split_names():
    assert retain_split_for("forget10") == "retain90"
    assert retain_split_for("forget01") == "retain99"
    assert holdout_split_for("forget05") == "holdout05"
    assert perturbed_split_for("forget05") == "forget05_perturbed"
    with pytest.raises(ValueError, match="forget01, forget05, forget10"):
        retain_split_for("forget20")


def test_unknown_config_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown TOFU config 'forget11'.*forget01.*world_facts_perturbed"):
        load_tofu_split("forget11")


def test_local_folder_loads_tofu_fields():
    forget = load_tofu_split("forget01", SAMPLE)
    assert forget.column_names == ["question", "answer"]
    assert len(forget) == 10
    perturbed = load_tofu_split("forget01_perturbed", SAMPLE)
    assert {"question", "answer", "paraphrased_answer", "perturbed_answer"} <= set(perturbed.column_names)
    assert all(len(p) == 5 for p in perturbed["perturbed_answer"])
    facts = load_tofu_split("world_facts_perturbed", SAMPLE)
    assert "paraphrased_answer" not in facts.column_names
    assert facts[0]["answer"] == "Paris"
    assert len(facts[0]["perturbed_answer"]) == 3


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"lacks 'forget05\.json'"):
        load_tofu_split("forget05", SAMPLE)
    with pytest.raises(FileNotFoundError, match=r"lacks 'full\.json'"):
        load_tofu_split("full", tmp_path)


def test_joined_splits_concatenate_common_fields():
    joined = load_tofu_splits("forget01+world_facts_perturbed", SAMPLE)
    assert joined.column_names == ["question", "answer"]
    assert len(joined) == 20
    assert joined[10]["answer"] == "Paris"
