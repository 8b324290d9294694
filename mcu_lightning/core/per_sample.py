"""Per-sample loss helpers, written once and reused by losses, curriculum scoring and metrics.

For causal LMs the logits at position i predict token i+1, and positions labelled -100 (prompt and
padding) do not count. For classifiers ``labels`` has one entry per sample and the loss is plain CE.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100


def token_nll(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Token-level NLL of a causal LM: ``(nll[B, L-1], mask[B, L-1])`` with the usual one-step shift."""
    shift_logits = logits[:, :-1, :]
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    nll = F.cross_entropy(
        shift_logits.float().reshape(-1, shift_logits.size(-1)),
        shift_labels.clamp_min(0).reshape(-1),
        reduction="none",
    ).view_as(shift_labels)
    return nll * mask, mask


def answer_positions(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The logits that predict answer tokens, those tokens and their mask: ``(z [B, T, V], y [B, T], mask [B, T])``.

    Causal LM (``[B, L, V]``): the one-step shift, ``z = logits[:, :-1]``, ``y = labels[:, 1:]`` (-100 replaced by
    0, masked out). Classification (``[B, C]`` with labels ``[B]``): one position a sample, always counted.
    """
    if logits.dim() == 2:
        return logits[:, None, :], labels[:, None], torch.ones_like(labels[:, None], dtype=torch.bool)
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    return logits[:, :-1, :], shift_labels.clamp_min(0), mask


def answer_logprobs(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``log p_t`` of every answer token ``[B, T]`` (float32) and the answer mask ``[B, T]`` (``answer_positions``)."""
    z, y, mask = answer_positions(logits, labels)
    logp = F.log_softmax(z.float(), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return logp, mask


def token_shares(values: Tensor, mask: Tensor) -> Tensor:
    """Each sample's share of the token mean of ``values [B, T]`` over ``mask``: ``B * sum_t v_it / sum_jt m_jt``,
    so ``mean(shares)`` is the mean over every counted token of the batch (the per-sample contract of SuperLoss)."""
    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum(dim=1) * values.size(0) / mask.sum().clamp_min(1)


def sequence_nll(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Summed answer NLL per sample ``S(x)`` and the number of answer tokens ``|y|``.

    For classification logits ``[B, C]`` with labels ``[B]``, ``S`` is the cross-entropy and ``|y| = 1``.
    ``log pi(y|x) = -S(x)``.
    """
    if logits.dim() == 2:
        nll = F.cross_entropy(logits.float(), labels, reduction="none")
        return nll, torch.ones_like(nll)
    nll, mask = token_nll(logits, labels)
    return nll.sum(dim=1), mask.sum(dim=1).to(nll.dtype)


def mean_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """Token-mean answer NLL per sample, ``S(x) / |y|`` (``[B]``); 0 for a sample without answer tokens."""
    total, count = sequence_nll(logits, labels)
    return total / count.clamp_min(1)


def batch_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """``NLL(x)``: the mean over all answer tokens of the batch (HF's causal-LM loss)."""
    if logits.dim() == 2:
        return F.cross_entropy(logits.float(), labels)
    nll, mask = token_nll(logits, labels)
    return nll.sum() / mask.sum().clamp_min(1)


def sequence_logprob(logits: Tensor, labels: Tensor) -> Tensor:
    """Summed log-probability of the answer per sample, ``log pi(y|x) = -S(x)``."""
    return -sequence_nll(logits, labels)[0]


@runtime_checkable
class ScoresSamples(Protocol):
    """What can score each sample of a batch: ``per_sample_loss(batch) -> [B]`` (e.g. every ``MCUModule``).

    The data layer's loss-scored curriculum asks the Trainer's LightningModule through this protocol, so data
    depends on this bottom layer and never on the modules that implement it.
    """

    def per_sample_loss(self, batch: Mapping[str, Any]) -> Tensor: ...
