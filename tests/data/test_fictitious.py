import json

from transformers import AutoTokenizer

from mcu_lightning.data.qa.fictitious import (
    build_fictitious_tokenizer,
    fictitious_complete,
    fictitious_tokenizer_path,
    generate_fictitious,
    prepare_fictitious,
    split_sizes,
)
from mcu_lightning.data.qa.tofu import TOFU_CONFIGS, load_tofu_split

ATTRIBUTES = 7  # questions per person


def _people(rows):
    """The names of the people in a split (birthplace and birth-year answers start with the name)."""
    return {r["answer"].split(" was born in ")[0] for r in rows if " was born in " in r["answer"]}


def test_deterministic_for_a_seed_and_different_for_another():
    assert generate_fictitious(0, 40) == generate_fictitious(0, 40)
    assert generate_fictitious(0, 40)["full"] != generate_fictitious(1, 40)["full"]


def test_split_sizes_follow_percentages():
    assert split_sizes(40) == {1: 1, 5: 2, 10: 4}
    assert split_sizes(200) == {1: 2, 5: 10, 10: 20}
    splits = generate_fictitious(0, 40)
    assert set(splits) == set(TOFU_CONFIGS)
    assert len(splits["full"]) == 40 * ATTRIBUTES
    for percent, people in ((1, 1), (5, 2), (10, 4)):
        assert len(splits[f"forget{percent:02d}"]) == people * ATTRIBUTES
        assert len(splits[f"retain{100 - percent:02d}"]) == (40 - people) * ATTRIBUTES
        assert len(splits[f"holdout{percent:02d}"]) == people * ATTRIBUTES
        assert len(splits[f"forget{percent:02d}_perturbed"]) == people * ATTRIBUTES


def test_splits_are_disjoint_by_person_and_nested():
    splits = generate_fictitious(3, 40)
    full = _people(splits["full"])
    for percent in (1, 5, 10):
        forget, retain = _people(splits[f"forget{percent:02d}"]), _people(splits[f"retain{100 - percent:02d}"])
        holdout = _people(splits[f"holdout{percent:02d}"])
        assert not forget & retain and forget | retain == full
        assert not holdout & full
    assert _people(splits["forget01"]) <= _people(splits["forget05"]) <= _people(splits["forget10"])
    assert _people(splits["retain_perturbed"]) <= _people(splits["retain90"])
    assert len(full) == 40 and len(_people(splits["holdout10"])) == 4


def test_perturbed_answers_are_five_wrong_values():
    for row in generate_fictitious(0, 40)["forget10_perturbed"]:
        assert len(row["perturbed_answer"]) == 5
        assert len(set(row["perturbed_answer"])) == 5
        assert row["paraphrased_answer"] not in row["perturbed_answer"]
        assert row["answer"] not in row["perturbed_answer"]
        assert row["paraphrased_question"] != row["question"]
    for row in generate_fictitious(0, 40)["world_facts_perturbed"]:
        assert len(row["perturbed_answer"]) == 3 and row["answer"] not in row["perturbed_answer"]


def test_prepare_writes_tofu_files_and_a_small_tokenizer(tmp_path):
    root = prepare_fictitious(tmp_path / "fict", seed=0, num_people=20)
    assert fictitious_complete(root)
    assert load_tofu_split("forget05", root).column_names == ["question", "answer"]
    rows = load_tofu_split("forget05_perturbed", root)
    assert len(rows) == ATTRIBUTES and len(rows[0]["perturbed_answer"]) == 5
    mtime = (root / "full.json").stat().st_mtime_ns
    assert prepare_fictitious(root, seed=0, num_people=20) == root
    assert (root / "full.json").stat().st_mtime_ns == mtime  # complete: not rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["fict"]  # no temporary folder left behind

    tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    assert len(tokenizer) < 1000
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "<eos>" and tokenizer.bos_token == "<bos>"
    for row in rows:
        ids = tokenizer(row["answer"])["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == row["answer"]
        assert 8 <= len(tokenizer(row["question"] + " " + row["answer"])["input_ids"]) <= 30


def test_tokenizer_from_texts_maps_unknown_words():
    tokenizer = build_fictitious_tokenizer(["Lisbon is a city.", "Oslo is a city."])
    assert len(tokenizer) == 4 + 6 + 3  # specials, words and '.', 'Question', ':', 'Answer'
    ids = tokenizer("Lisbon is Paris.", add_special_tokens=False)["input_ids"]
    assert ids[2] == tokenizer.unk_token_id and ids[0] != tokenizer.unk_token_id


def test_meta_records_seed(tmp_path):
    root = prepare_fictitious(tmp_path / "f", seed=5, num_people=12)
    assert json.loads((root / "meta.json").read_text()) == {"seed": 5, "num_people": 12}


def test_default_tokenizer_path_follows_mcu_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MCU_CACHE", str(tmp_path))
    path = fictitious_tokenizer_path(num_people=12)
    assert path == tmp_path / "fictitious-seed0-people12" / "tokenizer"
    assert AutoTokenizer.from_pretrained(str(path)).eos_token == "<eos>"
