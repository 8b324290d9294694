"""QA datasets: rows tokenized once when a dataset is built (the ids cached as lists), one item per row.

``QADataset`` holds the training items; ``QAEvalDataset`` adds what the metric suite reads (paraphrased and
perturbed answers, the prompt alone). A dataset records the rows it truncates (``truncated_rows``) and the
longest untruncated sequence (``longest``, the ``max_length`` that cuts nothing); the data module warns with both.
Bad rows fail with a ``ValueError`` naming the row and the field (:mod:`mcu_lightning.data.qa.rows`). Item keys
follow docs/internals.md.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from mcu_lightning.core.errors import InputError
from mcu_lightning.data.qa.rows import check_row, rows_of
from mcu_lightning.data.qa.templates import TemplateSpec
from mcu_lightning.data.qa.tokenization import QATokenizer


class QADataset(Dataset):
    """Training items ``{"input_ids", "labels", "index"}`` (lists; the collator pads them)."""

    def __init__(
        self,
        data: Any,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 128,
        template: TemplateSpec | None = None,
    ) -> None:
        self.rows = rows_of(data)
        for index, row in enumerate(self.rows):
            check_row(row, index)
        self.encoder = QATokenizer(tokenizer, max_length=max_length, template=template)
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
        super().__init__(data=data, tokenizer=tokenizer, max_length=max_length, template=template)
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
