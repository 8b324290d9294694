"""Negative Preference Optimization (Zhang et al., 2024, "Negative Preference Optimization: From
Catastrophic Collapse to Effective Unlearning").

Forget term, per sample: ``-(2/beta) * logsigmoid(-beta * (log pi_theta(y|x) - log pi_ref(y|x)))`` with
summed answer log-probabilities. It is DPO with the forget answer as the loser and no winner; as
``beta -> 0`` it tends to gradient ascent, and unlike it the term is bounded below (by 0), so the
divergence of gradient ascent is slowed. open-unlearning's NPO computes the same quantity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.core.per_sample import sequence_logprob, sequence_nll
from mcu_lightning.losses.base import LossOutput
from mcu_lightning.losses.forget_retain import ForgetRetainLoss
from mcu_lightning.losses.nll import policy_logits, require_split


def npo_loss(logp: Tensor, logp_ref: Tensor, beta: float = 0.1) -> Tensor:
    """NPO (Zhang et al., 2024), per sample: ``-(2/beta) * logsigmoid(-beta * (logp - logp_ref))``."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - logp_ref))


class NPO(ForgetRetainLoss):
    """``gamma * mean_i npo_loss(log pi_theta(y_i|x_i), log pi_ref(y_i|x_i)) + alpha * retain term``.

    Args:
        beta: inverse temperature of the preference (0.1 in the paper).
        gamma: weight of the forget term.
        alpha: weight of the retain term (skipped when the batch has no retain part).
        retain_loss: ``"nll"``, ``"kl"`` (KL(p_ref || p_theta) on retain answers) or None (no retain term).

    Logs ``forget_loss``, ``retain_loss``, ``forget_nll`` and ``npo_log_ratio`` (mean of
    ``log pi_theta - log pi_ref``, negative once the model forgets).
    """

    needs_reference: bool = True

    def __init__(
        self, beta: float = 0.1, gamma: float = 1.0, alpha: float = 1.0, retain_loss: str | None = "nll"
    ) -> None:
        super().__init__(gamma, alpha, retain_loss)
        if beta <= 0:
            raise InputError(f"NPO: beta must be positive, got {beta}")
        self.beta = beta

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        reference = self.require_reference(reference)
        forget = require_split(batch, "forget", type(self).__name__)
        total, count = sequence_nll(policy_logits(policy, forget), forget["labels"])
        logp = -total
        with torch.no_grad():
            logp_ref = sequence_logprob(policy_logits(reference, forget), forget["labels"])
        per_sample = npo_loss(logp, logp_ref, self.beta)
        logs = {"npo_log_ratio": (logp - logp_ref).mean(), "forget_nll": total.sum() / count.sum().clamp_min(1)}
        return self.combine(policy, batch, reference, per_sample, logs)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, gamma={self.gamma}, alpha={self.alpha}, retain_loss={self.retain_loss!r}"
