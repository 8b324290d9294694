"""QA rows -> token ids for causal LMs: prompt formatting, label masking, padding.

A row is (question, answer). With a ``template`` (a preset name such as ``llama3_instruct`` or ``phi_1_5``,
or explicit fields; :mod:`mcu_lightning.data.templates`) the sequence and its answer mask are built exactly as
open-unlearning builds them from that model's template settings. Without one (this project's own format),
the prompt is the tokenizer's chat template with the question as the user turn when the tokenizer has one,
else ``"Question: {q}\\nAnswer:"``; the answer follows (the assistant turn, or ``" {a}"``) and an EOS token is
appended. ``labels`` copy the ids on the answer and its EOS and are -100 on the prompt and on padding, so a
loss counts answer tokens only. A tokenizer without a pad token gets ``pad = eos`` (padding is told apart by
``attention_mask`` and -100 labels, never by the id).

Truncation policy (``max_length`` L): the answer keeps priority. Answer tokens plus EOS are cut at their end
to ``max(1, L - len(prompt))``, then the prompt is cut at its START to fill the rest, so every sequence has
at most L tokens and at least one labelled token; the EOS stays labelled whenever the whole answer fits
after the prompt. A dataset records the rows it truncates (``truncated_rows``) and the longest untruncated
sequence (``longest``, the ``max_length`` that cuts nothing); the data module warns with both. Bad rows
fail with a ``ValueError`` naming the row and the field: a missing or non-string
``question``/``answer``, an empty answer, an answer that tokenizes to nothing.

Rows are tokenized once when a dataset is built (the ids are cached as lists). Collation pads training
keys on the right and ``prompt_*`` keys on the LEFT (for ``generate``); perturbed answers stack to
``[B, K, L]``. Batch keys follow docs/internals.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.per_sample import IGNORE_INDEX
from mcu_lightning.data.templates import TemplateSpec, resolve_template

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


def _rows(data: Any) -> list[dict[str, Any]]:
    if hasattr(data, "to_list"):
        return data.to_list()
    return [dict(row) for row in data]


class MissingFieldError(KeyError, InputError):
    """A QA row lacks a field: a ``KeyError`` (a missing key) that is also an ``InputError`` (bad input)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def check_row(row: Any, index: int) -> None:
    """Raise a ``ValueError`` naming row ``index`` and the field when a QA row cannot be trained on."""
    if not isinstance(row, Mapping):
        raise InputError(f"QA row {index} is a {type(row).__name__}, not an object with 'question' and 'answer'")
    for key in ("question", "answer"):
        if key not in row or row[key] is None:  # None: a JSON-lines reader filled in a field the row lacks
            present = sorted(k for k, v in row.items() if v is not None)
            raise MissingFieldError(f"QA rows need '{key}'; row {index} lacks it (its fields: {present})")
        if not isinstance(row[key], str):
            raise InputError(f"QA row {index}: field '{key}' is a {type(row[key]).__name__}, not a string")
    if not row["answer"].strip():
        raise InputError(f"QA row {index}: field 'answer' is empty; drop the row or give it an answer")
    for key in ("paraphrased_answer", "perturbed_answer"):
        if key in row and row[key] is not None:
            values = [row[key]] if isinstance(row[key], str) else row[key]
            if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
                raise InputError(f"QA row {index}: field '{key}' must be a non-empty string or list of them")


class QADataset(Dataset):
    """Training items ``{"input_ids", "labels", "index"}`` (lists; the collator pads them)."""

    def __init__(
        self,
        data: Any,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 128,
        template: TemplateSpec | None = None,
    ) -> None:
        self.rows = _rows(data)
        for index, row in enumerate(self.rows):
            check_row(row, index)
        self.encoder = QATokenizer(tokenizer, max_length, template)
        #: indices of rows with at least one sequence cut to ``max_length`` (see :attr:`longest`)
        self.truncated_rows: set[int] = set()
        self.items = [self._encode(index, r["question"], r["answer"]) for index, r in enumerate(self.rows)]

    @property
    def longest(self) -> int:
        """The longest sequence (prompt + answer + EOS) before truncation: the ``max_length`` that cuts nothing."""
        return self.encoder.longest

    def _encode(self, index: int, question: str, answer: str, field: str = "answer") -> tuple[list[int], list[int]]:
        before = self.encoder.truncated
        try:
            out = self.encoder.sequence(question, answer)
        except ValueError as err:
            raise InputError(f"QA row {index}: field '{field}': {err}") from err
        if self.encoder.truncated > before:
            self.truncated_rows.add(index)
        return out

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        input_ids, labels = self.items[index]
        return {"input_ids": input_ids, "labels": labels, "index": index}

    @property
    def questions(self) -> list[str]:
        return [r["question"] for r in self.rows]


class QAEvalDataset(QADataset):
    """Evaluation items: the training keys plus what the metric suite reads (docs/internals.md).

    ``paraphrased_*`` when rows have ``paraphrased_answer``; ``perturbed_*`` (K sequences) when rows have
    ``perturbed_answer``; ``prompt_input_ids`` always; ``answer`` and ``question`` texts. Rows with a
    different number of perturbed answers are cut to the smallest K (with a warning) so they stack.
    """

    def __init__(
        self,
        data: Any,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 128,
        template: TemplateSpec | None = None,
    ) -> None:
        super().__init__(data, tokenizer, max_length, template)
        fields = set(self.rows[0]) if self.rows else set()
        self.has_paraphrased = "paraphrased_answer" in fields
        self.num_perturbed = 0
        if "perturbed_answer" in fields:
            counts = [len(_as_list(r["perturbed_answer"])) for r in self.rows]
            self.num_perturbed = min(counts)
            if max(counts) != self.num_perturbed:
                warnings.warn(
                    f"rows have {min(counts)} to {max(counts)} perturbed answers; using the first "
                    f"{self.num_perturbed} of each so they stack",
                    stacklevel=2,
                )
        enc = self.encoder
        self.extras: list[dict[str, Any]] = []
        for index, r in enumerate(self.rows):
            before = enc.truncated
            extra: dict[str, Any] = {"prompt_input_ids": enc.prompt_ids(r["question"])}
            if enc.truncated > before:
                self.truncated_rows.add(index)
            if self.has_paraphrased:
                extra["paraphrased"] = self._encode(index, r["question"], r["paraphrased_answer"], "paraphrased_answer")
            if self.num_perturbed:
                wrong = _as_list(r["perturbed_answer"])[: self.num_perturbed]
                extra["perturbed"] = [self._encode(index, r["question"], a, "perturbed_answer") for a in wrong]
            self.extras.append(extra)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        extra = self.extras[index]
        item["prompt_input_ids"] = extra["prompt_input_ids"]
        if "paraphrased" in extra:
            item["paraphrased_input_ids"], item["paraphrased_labels"] = extra["paraphrased"]
        if "perturbed" in extra:
            item["perturbed_input_ids"] = [ids for ids, _ in extra["perturbed"]]
            item["perturbed_labels"] = [labels for _, labels in extra["perturbed"]]
        item["answer"] = self.rows[index]["answer"]
        item["question"] = self.rows[index]["question"]
        return item


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _positions(lengths: Sequence[int], length: int, left: bool) -> Tensor:
    """``[N, length]`` bool: where each row's ``lengths[i]`` values go (the first ones, or the last with ``left``)."""
    sizes = torch.tensor(lengths, dtype=torch.long).unsqueeze(1)
    columns = torch.arange(length)
    return columns >= length - sizes if left else columns < sizes


def pad_sequences(seqs: Sequence[Sequence[int]], value: int, left: bool = False, length: int | None = None) -> Tensor:
    """Stack integer lists into ``[N, L]`` padded with ``value`` on the right (or the left).

    One tensor conversion for the whole batch and one masked write (row-major order keeps each row's values in
    place), not a conversion per row: collation runs for every batch of every epoch.
    """
    lengths = [len(s) for s in seqs]
    length = max(lengths, default=0) if length is None else length
    if lengths and max(lengths) > length:
        raise InputError(f"a sequence of {max(lengths)} values does not fit length={length}")
    out = torch.full((len(seqs), length), value, dtype=torch.long)
    out[_positions(lengths, length, left)] = torch.tensor([v for s in seqs for v in s], dtype=torch.long)
    return out


def padding_mask(seqs: Sequence[Sequence[int]], length: int, left: bool = False) -> Tensor:
    """The attention mask of :func:`pad_sequences`: 1 on the values, 0 on the padding, ``[N, length]`` long."""
    return _positions([len(s) for s in seqs], length, left).long()


class QACollator:
    """Pads QA items into a batch (keys of docs/internals.md); picklable for worker processes.

    ``mask_pad_ids=True`` is open-unlearning's attention mask (``compat: open_unlearning``,
    :mod:`mcu_lightning.core.compat`): ``input_ids != pad_token_id`` on the training and scoring keys, so with
    ``pad = eos`` every real end-of-turn token inside a sequence is hidden too. By default only the padding is masked.
    ``prompt_attention_mask`` always marks the padding (the suite strips it, then masks its generation prompts).
    """

    def __init__(self, pad_token_id: int, mask_pad_ids: bool = False) -> None:
        self.pad_token_id = pad_token_id
        self.mask_pad_ids = mask_pad_ids

    def _pair(self, prefix: str, ids: list, labels: list, out: dict[str, Any]) -> None:
        input_ids = pad_sequences(ids, self.pad_token_id)
        out[f"{prefix}input_ids"] = input_ids
        if self.mask_pad_ids:
            out[f"{prefix}attention_mask"] = (input_ids != self.pad_token_id).long()
        else:
            out[f"{prefix}attention_mask"] = padding_mask(ids, input_ids.shape[1])
        out[f"{prefix}labels"] = pad_sequences(labels, IGNORE_INDEX, length=input_ids.shape[1])

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self._pair("", [it["input_ids"] for it in items], [it["labels"] for it in items], out)
        out["index"] = torch.tensor([it["index"] for it in items], dtype=torch.long)
        first = items[0]
        if "paraphrased_input_ids" in first:
            self._pair(
                "paraphrased_",
                [it["paraphrased_input_ids"] for it in items],
                [it["paraphrased_labels"] for it in items],
                out,
            )
        if "perturbed_input_ids" in first:
            k = len(first["perturbed_input_ids"])
            flat = {}
            ids = [s for it in items for s in it["perturbed_input_ids"]]
            labels = [s for it in items for s in it["perturbed_labels"]]
            self._pair("", ids, labels, flat)
            for key, value in flat.items():
                out[f"perturbed_{key}"] = value.view(len(items), k, -1)
        if "prompt_input_ids" in first:
            prompts = [it["prompt_input_ids"] for it in items]
            out["prompt_input_ids"] = pad_sequences(prompts, self.pad_token_id, left=True)
            out["prompt_attention_mask"] = padding_mask(prompts, out["prompt_input_ids"].shape[1], left=True)
        for key in ("answer", "question"):
            if key in first:
                out[key] = [it[key] for it in items]
        return out
