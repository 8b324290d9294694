from pathlib import Path

import pytest
import torch

from mcu_lightning.data.qa import QACollator, QADataset, QAEvalDataset, QATokenizer, format_qa
from mcu_lightning.data.qa.fictitious import build_fictitious_tokenizer
from mcu_lightning.data.qa.tofu import load_tofu_split
from mcu_lightning.data.qa.tokenization import PLAIN_PROMPT

SAMPLE = Path(__file__).parents[1] / "fixtures" / "tofu_sample"  # in the repository: a fresh clone skips nothing


@pytest.fixture(scope="module")
def tokenizer():
    return build_fictitious_tokenizer(SAMPLE)


def test_plain_format_masks_prompt_and_appends_eos(tokenizer):
    encoder = QATokenizer(tokenizer, max_length=64)
    question, answer = "Who wrote Hamlet?", "William Shakespeare"
    input_ids, labels = encoder.sequence(question, answer)
    prompt_ids = tokenizer(PLAIN_PROMPT.format(question=question))["input_ids"]
    answer_ids = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
    assert input_ids == prompt_ids + answer_ids + [tokenizer.eos_token_id]
    n = len(prompt_ids)
    assert labels[n - 1] == -100 and labels[n] == answer_ids[0]  # last prompt token masked, first answer labelled
    assert labels[-1] == tokenizer.eos_token_id
    assert labels.count(-100) == n
    assert input_ids[0] == tokenizer.bos_token_id


def test_truncation_keeps_an_answer_token(tokenizer):
    encoder = QATokenizer(tokenizer, max_length=8)
    input_ids, labels = encoder.sequence("Who wrote Hamlet? " * 3, "William Shakespeare wrote it")
    assert len(input_ids) == 8 and labels[-1] != -100 and labels[0] == -100
    short = QATokenizer(tokenizer, max_length=12).sequence("Who wrote Hamlet?", "William Shakespeare wrote it")
    assert len(short[0]) == 12 and short[1][-1] != tokenizer.eos_token_id  # the answer's end is cut


def test_pad_defaults_to_eos():
    tok = build_fictitious_tokenizer(["a b c"])
    tok.pad_token = None
    QATokenizer(tok)
    assert tok.pad_token == "<eos>" and tok.pad_token_id == tok.eos_token_id


def test_chat_template_splits_user_and_assistant_turns(tokenizer):
    tok = build_fictitious_tokenizer(["Where was Ana born? Ana was born in Lima. user assistant"])
    tok.chat_template = (
        "{% for m in messages %}<bos> {{ m['role'] }} : {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<bos> assistant : {% endif %}"
    )
    prompt, answer = format_qa(tok, "Where was Ana born?", "Ana was born in Lima.")
    assert prompt == "<bos> user : Where was Ana born? <bos> assistant : "
    assert answer == "Ana was born in Lima. "
    input_ids, labels = QATokenizer(tok).sequence("Where was Ana born?", "Ana was born in Lima.")
    assert input_ids.count(tok.bos_token_id) == 2  # no extra BOS from add_special_tokens
    assert tok.decode([t for t in labels if t != -100]) == "Ana was born in Lima. <eos>"


def test_train_batch_is_right_padded(tokenizer):
    data = QADataset(load_tofu_split("forget01", SAMPLE), tokenizer, max_length=64)
    batch = QACollator(tokenizer.pad_token_id)([data[0], data[1], data[2]])
    assert set(batch) == {"input_ids", "attention_mask", "labels", "index"}
    lengths = [len(data[i]["input_ids"]) for i in range(3)]
    assert batch["input_ids"].shape == (3, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    short = lengths.index(min(lengths))
    assert batch["input_ids"][short, -1] == tokenizer.pad_token_id and batch["labels"][short, -1] == -100
    assert batch["attention_mask"][short, 0] == 1
    assert batch["index"].tolist() == [0, 1, 2]


def test_eval_batch_has_metric_keys_and_left_padded_prompts(tokenizer):
    data = QAEvalDataset(load_tofu_split("forget01_perturbed", SAMPLE), tokenizer, max_length=128)
    items = [data[i] for i in range(4)]
    batch = QACollator(tokenizer.pad_token_id)(items)
    assert batch["perturbed_input_ids"].shape[:2] == (4, 5)
    assert batch["perturbed_labels"].shape == batch["perturbed_input_ids"].shape
    assert batch["paraphrased_input_ids"].shape[0] == 4
    prompts = batch["prompt_input_ids"]
    lengths = [len(it["prompt_input_ids"]) for it in items]
    short = lengths.index(min(lengths))
    assert min(lengths) < max(lengths)
    assert prompts[short, 0] == tokenizer.pad_token_id and batch["prompt_attention_mask"][short, 0] == 0
    assert prompts[short, -1] != tokenizer.pad_token_id and batch["prompt_attention_mask"][short, -1] == 1
    # the prompt is exactly the unmasked prefix of the training sequence
    n = lengths[0]
    assert items[0]["input_ids"][:n] == items[0]["prompt_input_ids"] and items[0]["labels"][n - 1] == -100
    assert batch["answer"][0] == data.rows[0]["answer"] and batch["question"][0] == data.rows[0]["question"]
    k2 = items[0]["perturbed_labels"][2]
    assert batch["perturbed_labels"][0, 2, : len(k2)].tolist() == k2


def test_real_authors_without_paraphrase_omit_those_keys(tokenizer):
    data = QAEvalDataset(load_tofu_split("real_authors_perturbed", SAMPLE), tokenizer)
    batch = QACollator(tokenizer.pad_token_id)([data[0], data[1]])
    assert "paraphrased_input_ids" not in batch
    assert batch["perturbed_input_ids"].shape[:2] == (2, 3)
    assert batch["answer"] == ["William Shakespeare", "George Orwell"]
    holdout = QAEvalDataset(load_tofu_split("holdout01", SAMPLE), tokenizer)
    assert "perturbed_input_ids" not in holdout[0] and "prompt_input_ids" in holdout[0]


def test_uneven_perturbed_counts_are_cut_to_the_smallest(tokenizer):
    rows = [
        {"question": "Who wrote Hamlet?", "answer": "William Shakespeare", "perturbed_answer": ["a", "b", "c"]},
        {"question": "Who wrote Hamlet?", "answer": "Jane Austen", "perturbed_answer": ["a", "b"]},
    ]
    with pytest.warns(UserWarning, match="2 to 3 perturbed answers"):
        data = QAEvalDataset(rows, tokenizer)
    assert torch.Size([2, 2]) == QACollator(0)([data[0], data[1]])["perturbed_input_ids"].shape[:2]


def test_rows_without_answer_are_refused(tokenizer):
    with pytest.raises(KeyError, match="QA rows need 'answer'"):
        QADataset([{"question": "q"}], tokenizer)


def test_pad_sequences_and_padding_mask_right_and_left():
    from mcu_lightning.data.padding import pad_sequences, padding_mask

    seqs = [[1, 2, 3], [4], [], [5, 6]]
    assert pad_sequences(seqs, 0).tolist() == [[1, 2, 3], [4, 0, 0], [0, 0, 0], [5, 6, 0]]
    assert pad_sequences(seqs, 9, left=True, length=4).tolist() == [[9, 1, 2, 3], [9, 9, 9, 4], [9] * 4, [9, 9, 5, 6]]
    assert padding_mask(seqs, 3).tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]]
    assert padding_mask(seqs, 4, left=True).tolist() == [[0, 1, 1, 1], [0, 0, 0, 1], [0] * 4, [0, 0, 1, 1]]
    assert pad_sequences([], 0).shape == (0, 0)
    with pytest.raises(ValueError, match="does not fit length=2"):
        pad_sequences(seqs, 0, length=2)
