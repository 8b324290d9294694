"""QA rows -> token ids for causal LMs: prompt formatting, label masking, truncation.

A row is (question, answer). With a ``template`` (a preset name such as ``llama3_instruct`` or ``phi_1_5``,
or explicit fields; :mod:`mcu_lightning.data.qa.templates`) the sequence and its answer mask are built exactly as
open-unlearning builds them from that model's template settings. Without one (this project's own format),
the prompt is the tokenizer's chat template with the question as the user turn when the tokenizer has one,
else ``"Question: {q}\\nAnswer:"``; the answer follows (the assistant turn, or ``" {a}"``) and an EOS token is
appended. ``labels`` copy the ids on the answer and its EOS and are -100 on the prompt and on padding, so a
loss counts answer tokens only. A tokenizer without a pad token gets ``pad = eos`` (padding is told apart by
``attention_mask`` and -100 labels, never by the id).

Truncation policy (``max_length`` L): the answer keeps priority. Answer tokens plus EOS are cut at their end
to ``max(1, L - len(prompt))``, then the prompt is cut at its START to fill the rest, so every sequence has
at most L tokens and at least one labelled token; the EOS stays labelled whenever the whole answer fits
after the prompt. The tokenizer counts the sequences it cuts and the longest untruncated one (the
``max_length`` that cuts nothing); an answer that tokenizes to nothing is refused.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.per_sample import IGNORE_INDEX
from mcu_lightning.data.qa.templates import TemplateSpec, resolve_template

PLAIN_PROMPT = "Question: {question}\nAnswer:"


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give a tokenizer without a pad token ``pad = eos`` (in place); raise if it has neither."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise InputError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token first")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_qa(tokenizer: PreTrainedTokenizerBase, question: str, answer: str) -> tuple[str, str]:
    """The prompt text and the answer text that follows it (their concatenation is the training text)."""
    if not has_chat_template(tokenizer):
        return PLAIN_PROMPT.format(question=question), " " + answer
    user = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*user, {"role": "assistant", "content": answer}], tokenize=False)
    if full.startswith(prompt):
        return prompt, full[len(prompt) :]
    return prompt, answer  # templates that rewrite earlier turns: keep the raw answer after the prompt


class QATokenizer:
    """Tokenizes (question, answer) pairs into ``(prompt_ids, answer_ids)`` with EOS and truncation.

    Prompt and answer are tokenized separately and concatenated, so the prompt alone (used for
    generation) is exactly the prefix the model was trained on. A sequence longer than ``max_length``
    keeps at least one answer token: the answer is cut at the end first, then the prompt at its start.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, max_length: int = 128, template: TemplateSpec | None = None
    ) -> None:
        if max_length < 2:
            raise InputError(f"max_length={max_length} leaves no room for a prompt and an answer; use at least 2")
        self.tokenizer = ensure_pad_token(tokenizer)
        self.max_length = max_length
        self.template = resolve_template(template)
        self.chat = has_chat_template(tokenizer)
        #: sequences cut to ``max_length`` so far, and the longest untruncated one (for the truncation warning)
        self.truncated = 0
        self.longest = 0

    def prompt_ids(self, question: str) -> list[int]:
        return self.encode(question, "")[0]

    def _untruncated(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        if self.template is not None:  # open-unlearning's split: the whole text tokenized, the prompt's length masked
            if not answer:
                return self.template.prompt_ids(self.tokenizer, question), []
            full = self.template.full_ids(self.tokenizer, question, answer)
            n = min(len(self.template.prompt_ids(self.tokenizer, question)), len(full) - 1)
            return full[:n], full[n:]
        prompt, answer_text = format_qa(self.tokenizer, question, answer)
        # a chat template writes its own BOS; the plain format lets the tokenizer add its special tokens
        prompt_ids = self.tokenizer(prompt, add_special_tokens=not self.chat)["input_ids"]
        answer_ids = self.tokenizer(answer_text, add_special_tokens=False)["input_ids"] if answer else []
        eos = self.tokenizer.eos_token_id
        if answer and eos is not None and (not answer_ids or answer_ids[-1] != eos):
            answer_ids = [*answer_ids, eos]
        return prompt_ids, answer_ids

    def encode(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        prompt_ids, answer_ids = self._untruncated(question, answer)
        if answer and not answer_ids:
            raise InputError(f"answer {answer!r} tokenizes to no tokens and the tokenizer has no eos token")
        length = len(prompt_ids) + len(answer_ids)
        self.longest = max(self.longest, length)
        self.truncated += length > self.max_length
        if not answer:
            return prompt_ids[-self.max_length :], []
        answer_ids = answer_ids[: max(1, self.max_length - len(prompt_ids))] if answer else []
        keep = self.max_length - len(answer_ids)
        return prompt_ids[-keep:] if len(prompt_ids) > keep else prompt_ids, answer_ids

    def sequence(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        """``(input_ids, labels)`` of one pair: labels are -100 on the prompt."""
        prompt_ids, answer_ids = self.encode(question, answer)
        return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids
