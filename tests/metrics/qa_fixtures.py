"""Shared fixtures of the metrics tests: a bigram "LM" with known probabilities and a QA-batch builder."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

IGNORE = -100


class Bigram(nn.Module):
    """A causal LM whose next-token distribution depends only on the current token: p(y_i | y_<i) = P[y_{i-1}, y_i]."""

    def __init__(self, probs: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", probs.double().log())

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.table[input_ids]


def sequence(question: list[int], answer: list[int], length: int, pad: int = 0) -> tuple[list[int], ...]:
    """Right-padded (input_ids, attention_mask, labels) of question + answer, labels -100 on the prompt and padding."""
    ids = question + answer
    labels = [IGNORE] * len(question) + answer
    fill = length - len(ids)
    return ids + [pad] * fill, [1] * len(ids) + [0] * fill, labels + [IGNORE] * fill


def qa_batch(
    questions: list[list[int]],
    answers: list[list[int]],
    index: list[int],
    paraphrased: list[list[int]] | None = None,
    perturbed: list[list[list[int]]] | None = None,
    length: int = 8,
    pad: int = 0,
) -> dict:
    """A QA evaluation sub-batch in the format of docs/internals.md (token ids given directly)."""

    def block(answer_lists: list[list[int]]) -> tuple[Tensor, Tensor, Tensor]:
        rows = [sequence(q, a, length, pad) for q, a in zip(questions, answer_lists, strict=True)]
        return tuple(torch.tensor([row[i] for row in rows]) for i in range(3))

    ids, mask, labels = block(answers)
    prompt_len = max(len(q) for q in questions)
    prompt_ids = torch.tensor([[pad] * (prompt_len - len(q)) + q for q in questions])
    prompt_mask = torch.tensor([[0] * (prompt_len - len(q)) + [1] * len(q) for q in questions])
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "prompt_input_ids": prompt_ids,
        "prompt_attention_mask": prompt_mask,
        "answer": [" ".join(map(str, a)) for a in answers],
        "question": [" ".join(map(str, q)) for q in questions],
        "index": torch.tensor(index),
    }
    if paraphrased is not None:
        batch["paraphrased_input_ids"], batch["paraphrased_attention_mask"], batch["paraphrased_labels"] = block(
            paraphrased
        )
    if perturbed is not None:
        per_option = [block([options[k] for options in perturbed]) for k in range(len(perturbed[0]))]
        for i, key in enumerate(("input_ids", "attention_mask", "labels")):
            batch[f"perturbed_{key}"] = torch.stack([option[i] for option in per_option], dim=1)
    return batch


# Vocabulary of the hand-computed cases: 0 pad, 1 question, 2 true/paraphrased answer, 3 EOS, 4 and 5 wrong answers.
EOS = 3


@pytest.fixture
def bigram() -> Bigram:
    """After the question: P(2) = 0.4, P(4) = P(5) = 0.2; after any answer token: P(EOS) = 0.5."""
    probs = torch.full((6, 6), 0.1)
    probs[1] = torch.tensor([0.05, 0.05, 0.4, 0.1, 0.2, 0.2])
    for token in (0, 2, 3, 4, 5):
        probs[token] = torch.tensor([0.1, 0.1, 0.1, 0.5, 0.1, 0.1])
    return Bigram(probs)
