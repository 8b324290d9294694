"""Per-sample statistics of a causal LM's answer tokens, computed from one teacher-forced forward pass.

Everything here is vectorised over the batch: a ``[B, L, V]`` logits tensor and ``[B, L]`` labels (prompt and
padding labelled -100, the answer plus its appended EOS labelled) in, one value per sample out. The formulas
follow TOFU (Maini et al., 2024) as implemented by open-unlearning (``src/evals/metrics/``), including its
choices on which answer tokens count:

* ``probability`` / ``loss`` / LOSS-MIA use every labelled token (EOS included), like ``evaluate_probability``;
* extraction strength, exact memorization and Min-K% drop each sample's last labelled token (the EOS), like
  open-unlearning's ``tokenwise_logprobs`` / ``tokenwise_vocab_logprobs`` (``actual_indices[:-1]``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.per_sample import IGNORE_INDEX, sequence_nll, token_nll

#: Guard against division by zero, as open-unlearning adds it (``+ 1e-10``) in ratios.
EPS = 1e-10


def answer_mask_without_eos(labels: Tensor) -> Tensor:
    """Shifted answer mask ``[B, L-1]`` without each sample's last labelled position (the appended EOS).

    Position ``i`` of the result refers to the prediction of token ``i + 1`` (the causal one-step shift).
    """
    mask = labels[:, 1:] != IGNORE_INDEX
    rank = mask.cumsum(dim=1)
    count = mask.sum(dim=1, keepdim=True)
    return mask & (rank < count)


def greedy_hits(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher-forced greedy hits ``argmax_v logits[:, i] == labels[:, i + 1]`` and the answer mask without EOS."""
    mask = answer_mask_without_eos(labels)
    hits = (logits[:, :-1, :].argmax(dim=-1) == labels[:, 1:]) & mask
    return hits, mask


def exact_memorization(logits: Tensor, labels: Tensor) -> Tensor:
    """Exact memorization (Tirumala et al., 2022; open-unlearning): EM = (1/|y|) sum_i 1[argmax p(.|x, y_<i) = y_i].

    ``|y|`` counts answer tokens without the EOS. A sample without answer tokens gets NaN (open-unlearning: None).
    """
    hits, mask = greedy_hits(logits, labels)
    count = mask.sum(dim=1)
    em = hits.sum(dim=1).double() / count.clamp_min(1)
    return torch.where(count > 0, em, torch.full_like(em, math.nan))


def extraction_strength(logits: Tensor, labels: Tensor) -> Tensor:
    """Extraction strength (Carlini et al., 2021; open-unlearning): ES = 1 - k/|y|.

    ``k`` is the earliest answer position from which every teacher-forced greedy prediction matches the answer:
    ``k = 0`` when the whole answer is predicted, ``k = |y|`` (ES = 0) when even the last token is missed; a sample
    without answer tokens scores 0. ``|y|`` counts answer tokens without the EOS, as in open-unlearning. Note:
    open-unlearning's loop (``for k in range(|y|)``) stops at ``k = |y| - 1`` when no suffix matches, giving such a
    sample 1/|y| instead of 0 (1 for a one-token answer); this follows the definition instead, so fully missed
    samples can differ from open-unlearning by 1/|y|.
    """
    hits, mask = greedy_hits(logits, labels)
    count = mask.sum(dim=1)
    rank = mask.cumsum(dim=1)  # 1-based position of each answer token
    miss_rank = torch.where(mask & ~hits, rank, torch.zeros_like(rank))
    k = miss_rank.max(dim=1).values  # the matching suffix starts right after the last miss
    es = 1.0 - k.double() / count.clamp_min(1)
    return torch.where(count > 0, es, torch.zeros_like(es))


def min_k_score(logits: Tensor, labels: Tensor, k: float = 0.4) -> Tensor:
    """Min-K% Prob MIA score (Shi et al., 2024; open-unlearning ``MinKProbAttack``): -mean of the k-fraction lowest
    answer-token log-probabilities, ``n_k = max(1, floor(k |y|))``; higher means less likely a member.

    ``|y|`` counts answer tokens without the EOS; a sample without answer tokens scores 0 (as open-unlearning).
    """
    if not 0.0 < k <= 1.0:
        raise InputError(f"min-k fraction must be in (0, 1], got {k}")
    nll, _ = token_nll(logits, labels)
    mask = answer_mask_without_eos(labels)
    logp = torch.where(mask, -nll.double(), torch.full_like(nll, math.inf, dtype=torch.float64))
    lowest, _ = logp.sort(dim=1)
    count = mask.sum(dim=1)
    n_k = (count.double() * k).floor().long().clamp_min(1)
    take = torch.arange(lowest.size(1), device=lowest.device)[None, :] < n_k[:, None]
    take = take & (count[:, None] > 0)
    total = torch.where(take, lowest, torch.zeros_like(lowest)).sum(dim=1)
    return torch.where(count > 0, -total / n_k, torch.zeros_like(total))


def zlib_score(mean_nll: Tensor, texts: Sequence[str]) -> Tensor:
    """zlib MIA score (Carlini et al., 2021; open-unlearning ``ZLIBAttack``): mean answer NLL / len(zlib(text)) bytes.

    ``texts`` are the answers as decoded from the labelled tokens (special tokens skipped).
    """
    if len(texts) != mean_nll.numel():
        raise InputError(f"zlib score got {len(texts)} texts for {mean_nll.numel()} samples")
    sizes = [max(len(zlib.compress(text.encode("utf-8"))), 1) for text in texts]
    return mean_nll.double() / torch.tensor(sizes, dtype=torch.float64, device=mean_nll.device)


def answer_nll(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Token-mean answer NLL per sample ``S(x)/|y|`` (EOS included) and ``|y|``; NaN where ``|y| = 0``."""
    total, count = sequence_nll(logits, labels)
    mean = total.double() / count.clamp_min(1)
    return torch.where(count > 0, mean, torch.full_like(mean, math.nan)), count


def normalised_probability(correct_nll: Tensor, perturbed_nll: Tensor) -> Tensor:
    """TOFU's probability for real authors / world facts (open-unlearning ``probability_w_options``):

    P(a) / (P(a) + sum_k P(a_k)),  P(y) = exp(-NLL(y)) the length-normalised answer probability,

    over the true answer ``a`` and the K wrong options ``a_k`` (``perturbed_nll`` ``[B, K]``, NaN = missing).
    """
    correct = torch.exp(-correct_nll.double())
    wrong = torch.exp(-perturbed_nll.double()).nansum(dim=1)
    return correct / (correct + wrong + EPS)


def finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The finite values of ``values`` as a flat float64 array (NaN and inf dropped)."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    return array[np.isfinite(array)]
