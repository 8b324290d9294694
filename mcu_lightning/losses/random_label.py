"""Random labelling: train the forget set toward wrong targets (Golatkar et al., 2020; Hayase et al.,
2020; the relabelling baseline of SalUn, Fan et al., 2024).

Classification: cross-entropy toward a wrong class, ``(y + 1) mod C`` (``mode="shift"``) or a uniformly
random other class from a seeded generator (``mode="random"``). Causal LM (QA): the forget answer is
replaced by another answer with the prompt kept; ``answer_source="forget"`` rolls the answers inside the
forget batch (sample i gets sample (i+1) mod B's answer), ``answer_source="retain"`` gives sample i the
answer of its retain partner i. A forget batch of one sample has no other answer to roll in, so it takes
its retain partner's answer, or raises when there is no retain part. Plus ``alpha`` times the retain term.

The prompt/answer surgery (``split_prompt_answer``, ``join_prompt_answer``) is shared with IdkDPO.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.core.per_sample import IGNORE_INDEX
from mcu_lightning.losses.base import LossOutput
from mcu_lightning.losses.forget_retain import ForgetRetainLoss
from mcu_lightning.losses.nll import nll_shares, policy_logits, require_split


def split_prompt_answer(sub_batch: Mapping[str, Any]) -> list[tuple[Tensor, Tensor]]:
    """Per sample ``(prompt_ids, answer_ids)`` of a right-padded causal-LM sub-batch.

    The answer is the span from the first to the last labelled position (labels != -100, EOS included);
    the prompt is everything before it. A sample without labelled tokens is all prompt (its unpadded part).
    """
    if "input_ids" not in sub_batch:
        raise KeyError(f"expected a causal-LM sub-batch with 'input_ids'; keys are {sorted(sub_batch)}")
    input_ids, labels = sub_batch["input_ids"], sub_batch["labels"]
    lengths = sub_batch["attention_mask"].sum(dim=1) if "attention_mask" in sub_batch else None
    pairs = []
    for i in range(input_ids.size(0)):
        labelled = (labels[i] != IGNORE_INDEX).nonzero().flatten()
        if labelled.numel() == 0:
            end = int(lengths[i]) if lengths is not None else input_ids.size(1)
            pairs.append((input_ids[i, :end], input_ids[i, :0]))
            continue
        start, stop = int(labelled[0]), int(labelled[-1]) + 1
        pairs.append((input_ids[i, :start], input_ids[i, start:stop]))
    return pairs


def join_prompt_answer(prompts: Sequence[Tensor], answers: Sequence[Tensor], pad_id: int = 0) -> dict[str, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (prompt and padding -100) of prompt+answer."""
    rows = [torch.cat([p, a.to(p)]) for p, a in zip(prompts, answers, strict=True)]
    width = max(row.numel() for row in rows)
    device = rows[0].device
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for i, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
        input_ids[i, : row.numel()] = row
        attention_mask[i, : row.numel()] = 1
        labels[i, prompt.numel() : row.numel()] = row[prompt.numel() :]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class RandomLabel(ForgetRetainLoss):
    """``gamma * CE(forget toward wrong targets) + alpha * retain term``.

    Args:
        alpha: weight of the retain term (skipped when the batch has no retain part).
        retain_loss: ``"nll"``, ``"kl"`` (needs a reference) or None.
        num_classes: classification only; defaults to the logits' last dimension.
        mode: classification only, ``"shift"`` (``(y+1) mod C``) or ``"random"`` (uniform over the other classes).
        seed: seed of the ``"random"`` generator.
        gamma: weight of the forget term.
        answer_source: QA only, ``"forget"`` (roll answers in the batch) or ``"retain"`` (retain partner's answer).

    ``per_sample`` holds each sample's share of the token-mean CE toward its new target.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        retain_loss: str | None = "nll",
        num_classes: int | None = None,
        mode: str = "shift",
        seed: int = 0,
        gamma: float = 1.0,
        answer_source: str = "forget",
    ) -> None:
        super().__init__(gamma, alpha, retain_loss)
        if mode not in ("shift", "random"):
            raise InputError(f"RandomLabel: mode must be 'shift' or 'random', got {mode!r}")
        if answer_source not in ("forget", "retain"):
            raise InputError(f"RandomLabel: answer_source must be 'forget' or 'retain', got {answer_source!r}")
        self.num_classes = num_classes
        self.mode = mode
        self.seed = seed
        self.answer_source = answer_source
        self.generator = torch.Generator().manual_seed(seed)

    def wrong_labels(self, labels: Tensor, num_classes: int) -> Tensor:
        """A wrong class per sample: ``(y + 1) mod C``, or ``(y + k) mod C`` with k uniform in [1, C-1]."""
        if num_classes < 2:
            raise InputError(f"RandomLabel needs at least 2 classes to pick a wrong one, got {num_classes}")
        if self.mode == "shift":
            return (labels + 1) % num_classes
        offset = torch.randint(1, num_classes, labels.shape, generator=self.generator).to(labels.device)
        return (labels + offset) % num_classes

    def relabelled_answers(self, batch: Mapping[str, Any], forget: Mapping[str, Any]) -> dict[str, Tensor]:
        """The forget sub-batch with every answer replaced by another sample's answer (prompts kept)."""
        pairs = split_prompt_answer(forget)
        prompts = [prompt for prompt, _ in pairs]
        retain = batch.get("retain")
        if self.answer_source == "forget" and len(pairs) > 1:
            answers = [pairs[(i + 1) % len(pairs)][1] for i in range(len(pairs))]
        elif retain is not None:
            retain_answers = [answer for _, answer in split_prompt_answer(retain)]
            answers = [retain_answers[i % len(retain_answers)] for i in range(len(pairs))]
        else:
            raise InputError(
                f"RandomLabel(answer_source={self.answer_source!r}) found no other answer for a forget batch of "
                f"{len(pairs)} sample(s) and no retain part; turn the retain data on or use forget batches of 2 or more"
            )
        return join_prompt_answer(prompts, answers)

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        forget = require_split(batch, "forget", type(self).__name__)
        if self.needs_reference:
            reference = self.require_reference(reference)
        if "input_ids" in forget:
            target = self.relabelled_answers(batch, forget)
            shares = nll_shares(policy_logits(policy, target), target["labels"])
        else:
            logits = policy_logits(policy, forget)
            shares = nll_shares(logits, self.wrong_labels(forget["labels"], self.num_classes or logits.size(-1)))
        return self.combine(policy, batch, reference, shares)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, retain_loss={self.retain_loss!r}, num_classes={self.num_classes}, "
            f"mode={self.mode!r}, gamma={self.gamma}, answer_source={self.answer_source!r}"
        )
