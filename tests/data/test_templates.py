"""Prompt presets against open-unlearning's template settings, token for token.

The tokenizers are built here from data (a BPE trained on the row's text plus each model's special tokens and,
for Llama-3, its chat-template string: tests/data/chat_templates/llama3_2_instruct.jinja, the template of
meta-llama/Llama-3.2-1B/3B-Instruct as llama.cpp's models/templates/ ships it). The expected sequences are
written out from open-unlearning's configs/model/*.yaml and src/data/utils.py (preprocess_chat_instance): the
whole conversation tokenized as one text, EOS appended unless present, labels -100 on the first len(prompt) ids.
"""

from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from mcu_lightning.data.qa import QADataset, QAEvalDataset, QATokenizer
from mcu_lightning.data.qa.templates import PRESETS, PromptTemplate, resolve_template

# TOFU forget01, row 0 (locuslab/TOFU, MIT license)
QUESTION = "What is the full name of the author born in Kuwait City, Kuwait on 08/09/1956?"
ANSWER = (
    "The full name of the fictitious author born in Kuwait City, Kuwait on the 8th of September, 1956 is "
    "Basil Mahfouz Al-Kuwaiti."
)
CORPUS = [QUESTION, f"Answer: {ANSWER}", "Question: Answer: You are a helpful assistant. Cutting Knowledge Date"]
LLAMA3_TEMPLATE = (Path(__file__).parent / "chat_templates" / "llama3_2_instruct.jinja").read_text()


def _byte_level(special: list[str], bos: str | None, eos: str) -> PreTrainedTokenizerFast:
    """A GPT-2/Llama-3 style byte-level BPE (spaces glued to the next word, as in ``ĠThe``)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)


@pytest.fixture(scope="module")
def llama3():
    special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = _byte_level(special, bos="<|begin_of_text|>", eos="<|eot_id|>")
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def phi():
    return _byte_level(["<|endoftext|>"], bos=None, eos="<|endoftext|>")


@pytest.fixture(scope="module")
def llama2():
    """A sentencepiece-style tokenizer (``▁`` for spaces, a prefix space) that adds ``<s>``, as Llama-2's does."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Strip(" ", 1, 0)])
    tok.train_from_iterator(
        [*CORPUS * 4, "[INST] [/INST]"], trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"])
    )
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _expected(tok, prompt_text, full_text, chat):
    """open-unlearning's (input_ids, labels, generation prompt) from the rendered texts."""
    prompt = tok(prompt_text, add_special_tokens=not chat)["input_ids"]
    full = tok(full_text, add_special_tokens=not chat)["input_ids"]
    if full[-1] != tok.eos_token_id:
        full = [*full, tok.eos_token_id]
    return full, [-100] * len(prompt) + full[len(prompt) :], prompt


def _ours(tok, template):
    encoder = QATokenizer(tok, max_length=512, template=template)
    input_ids, labels = encoder.sequence(QUESTION, ANSWER)
    return input_ids, labels, encoder.prompt_ids(QUESTION)


def test_llama3_instruct_matches_open_unlearning(llama3):
    prompt_text = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 10 Apr 2025\n\n"
        "You are a helpful assistant.<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{QUESTION}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert PRESETS["llama3_instruct"].prompt_text(llama3, QUESTION) == prompt_text
    expected = _expected(llama3, prompt_text, prompt_text + ANSWER + "<|eot_id|>", chat=True)
    assert _ours(llama3, "llama3_instruct") == expected
    input_ids, labels, _ = expected
    assert llama3.decode([t for t in labels if t != -100]) == ANSWER + "<|eot_id|>"  # the mask is the answer
    assert input_ids.count(llama3.bos_token_id) == 1


def test_llama3_without_preset_differs(llama3):
    """This project's own format (no system prompt, the template's default date) is not open-unlearning's."""
    assert _ours(llama3, None)[2] != _ours(llama3, "llama3_instruct")[2]


def test_llama2_chat_matches_open_unlearning(llama2):
    prompt_text = f"[INST] {QUESTION} [/INST]"
    assert PRESETS["llama2_chat"].prompt_text(llama2, QUESTION) == prompt_text
    expected = _expected(llama2, prompt_text, prompt_text + ANSWER, chat=False)
    assert _ours(llama2, "llama2_chat") == expected
    assert expected[0][0] == llama2.bos_token_id and expected[0][-1] == llama2.eos_token_id


def test_phi_1_5_matches_open_unlearning(phi):
    prompt_text = f"Question: {QUESTION}\nAnswer: "
    assert PRESETS["phi_1_5"].prompt_text(phi, QUESTION) == prompt_text
    input_ids, labels, prompt = expected = _expected(phi, prompt_text, prompt_text + ANSWER, chat=False)
    assert _ours(phi, "phi_1_5") == expected
    # open-unlearning's quirk, reproduced: "Answer: " ends in a lone space token, "Answer: The" merges it into
    # " The", so masking len(prompt) ids also masks the answer's first token
    assert phi.convert_ids_to_tokens(prompt[-1]) == "Ġ"
    assert phi.decode([t for t in labels if t != -100]) == ANSWER.removeprefix("The") + "<|endoftext|>"
    assert input_ids[: len(prompt) - 1] == prompt[:-1]


def test_eval_dataset_generation_prompt_is_the_template_prompt(phi):
    data = QAEvalDataset([{"question": QUESTION, "answer": ANSWER}], phi, max_length=512, template="phi_1_5")
    assert data[0]["prompt_input_ids"] == phi(f"Question: {QUESTION}\nAnswer: ")["input_ids"]


def test_explicit_fields_and_overrides():
    assert resolve_template({"preset": "llama3_instruct", "date_string": "1 Jan 2026"}).date_string == "1 Jan 2026"
    fields = {"user_start_tag": "Q: ", "user_end_tag": " ", "asst_start_tag": "A:"}
    assert resolve_template(fields) == PromptTemplate(user_start_tag="Q: ", user_end_tag=" ", asst_start_tag="A:")
    assert resolve_template("phi_1_5") is PRESETS["phi_1_5"] and resolve_template(None) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [("llama3", "unknown prompt template 'llama3'"), ({"user_tag": "Q"}, "unknown prompt template fields")],
)
def test_bad_template_is_named(spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_template(spec)


def test_chat_preset_needs_a_chat_template(phi):
    with pytest.raises(ValueError, match="has no chat_template"):
        QADataset([{"question": QUESTION, "answer": ANSWER}], phi, template="llama3_instruct")
