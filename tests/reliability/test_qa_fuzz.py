"""Property-based tests of the QA loader: any row either encodes with the documented invariants or fails
with a ``ValueError`` naming the row and the field; a bad JSON line is named by file and line."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcu_lightning.core.per_sample import IGNORE_INDEX
from mcu_lightning.data.qa import QACollator, QADataset, QAEvalDataset
from mcu_lightning.data.qa.fictitious import build_fictitious_tokenizer
from mcu_lightning.data.qa.tofu import load_tofu_split

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
WORDS = ["Ana", "was", "born", "in", "Lima", "Where", "Who", "wrote", "Hamlet", "?", ".", "é", "北京", "🙂", "zzz"]
text = st.lists(st.sampled_from(WORDS), min_size=0, max_size=60).map(" ".join) | st.text(max_size=80)


@pytest.fixture(scope="module")
def tokenizers():
    base = build_fictitious_tokenizer(["Where was Ana born? Ana was born in Lima. Who wrote Hamlet?"])
    no_pad = copy.deepcopy(base)
    no_pad.pad_token = None
    return base, no_pad


@SETTINGS
@given(question=text, answer=text, max_length=st.integers(2, 40), which=st.integers(0, 1))
def test_any_row_encodes_with_the_invariants_or_names_the_bad_field(tokenizers, question, answer, max_length, which):
    tokenizer = copy.deepcopy(tokenizers[which])
    row = {"question": question, "answer": answer}
    if not answer.strip():
        with pytest.raises(ValueError, match=r"QA row 0: field 'answer' is empty"):
            QADataset([row], tokenizer, max_length)
        return
    dataset = QADataset([row], tokenizer, max_length)
    assert tokenizer.pad_token_id is not None  # pad = eos when the tokenizer had none
    item = dataset[0]
    ids, labels = item["input_ids"], item["labels"]
    assert len(ids) == len(labels) <= max_length
    labelled = [i for i, v in enumerate(labels) if v != IGNORE_INDEX]
    assert labelled, "at least one answer token is labelled"
    assert labelled == list(range(labelled[0], len(labels)))  # the prompt (a prefix) is -100, the answer follows
    assert all(labels[i] == ids[i] for i in labelled)
    prompt_ids, _ = dataset.encoder.encode(question, answer)
    full_answer = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(full_answer) + len(prompt_ids) <= max_length:
        assert ids[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id  # EOS kept and labelled
    batch = QACollator(tokenizer.pad_token_id)(
        [item, QADataset([{"question": "Who", "answer": "Ana"}], tokenizer, max_length)[0]]
    )
    padded = batch["attention_mask"] == 0
    assert (batch["labels"][padded] == IGNORE_INDEX).all()  # padding is never labelled


@SETTINGS
@given(field=st.sampled_from(["question", "answer"]), value=st.one_of(st.integers(), st.lists(st.text())))
def test_non_string_fields_are_named(tokenizers, field, value):
    row = {"question": "Who?", "answer": "Ana", field: value}
    with pytest.raises(ValueError, match=rf"QA row 1: field '{field}' is a"):
        QADataset([{"question": "Who?", "answer": "Ana"}, row], tokenizers[0], 16)


def test_missing_field_and_bad_perturbed_answers_are_named(tokenizers):
    with pytest.raises(ValueError, match=r"QA rows need 'answer'; row 0 lacks it \(its fields: \['question'\]\)"):
        QADataset([{"question": "q"}], tokenizers[0])
    # a null is a missing field (a JSON-lines reader fills in the fields a row lacks), not a wrong type
    with pytest.raises(ValueError, match=r"QA rows need 'answer'; row 1 lacks it \(its fields: \['question'\]\)"):
        QADataset([{"question": "Who?", "answer": "Ana"}, {"question": "q", "answer": None}], tokenizers[0])
    bad = {"question": "Who?", "answer": "Ana", "paraphrased_answer": "Ana", "perturbed_answer": ["Lima", ""]}
    with pytest.raises(ValueError, match="QA row 0: field 'perturbed_answer' must be a non-empty string"):
        QAEvalDataset([bad], tokenizers[0])


@SETTINGS
@given(good=st.integers(0, 5), junk=st.sampled_from(['{"question": "a", "answer"', "[1, 2]", "not json", '{"q": 1']))
def test_a_malformed_json_line_is_named_by_file_and_line(tmp_path_factory, good, junk):
    folder = tmp_path_factory.mktemp("tofu")
    lines = [json.dumps({"question": f"q{i}", "answer": f"a{i}"}) for i in range(good)] + [junk]
    (folder / "forget10.json").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"forget10.json' line {good + 1}: "):
        load_tofu_split("forget10", folder)


def test_a_valid_file_still_loads(tmp_path: Path) -> None:
    rows = [{"question": "Où est né Ana? 北京", "answer": "Lima 🙂"}, {"question": "Who?", "answer": "Ana"}]
    (tmp_path / "forget10.json").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    assert load_tofu_split("forget10", tmp_path)["answer"] == ["Lima 🙂", "Ana"]
