"""Weighted Gradient Ascent, WGA (Wang et al., 2025, "Rethinking LLM Unlearning Objectives: A Gradient Perspective
and Go Beyond", ICLR 2025; open-unlearning ``src/trainer/unlearn/wga.py``, ``compute_wga_loss`` in
``src/trainer/utils.py``).

Gradient ascent whose every answer token is weighted by its own probability, held constant (no gradient):

    forget term = mean over the batch's answer tokens of  sg(p_t^beta) * log p_t,   p_t = pi_theta(y_t | x, y_<t)

so tokens the model has already forgotten (small ``p_t``) stop pushing, which slows GA's collapse. The loss is
``gamma * forget term + alpha * retain term``; defaults ``beta=1, gamma=1, alpha=1``, retain NLL, are
open-unlearning's ``configs/trainer/WGA.yaml``, which computes the same quantity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.core.per_sample import answer_logprobs, token_shares
from mcu_lightning.losses.base import LossOutput
from mcu_lightning.losses.forget_retain import ForgetRetainLoss
from mcu_lightning.losses.nll import policy_logits, require_split


def weighted_ascent(logp: Tensor, weight: Tensor, mask: Tensor) -> Tensor:
    """Per-sample shares of ``mean_t sg(w_t) * log p_t`` over the batch's answer tokens (minimising it lowers
    ``log p_t`` with step ``w_t``): the forget term of WGA and SatImp."""
    return token_shares(weight.detach() * logp, mask)


def wga_weights(logp: Tensor, beta: float = 1.0) -> Tensor:
    """WGA's token weights ``p_t^beta = exp(beta * log p_t)``, detached."""
    return torch.exp(beta * logp.detach())


class WGA(ForgetRetainLoss):
    """``gamma * mean_t sg(p_t^beta) log p_t + alpha * retain term``.

    Args:
        beta: temperature of the weights ``p_t^beta`` (0: plain gradient ascent on the token mean).
        gamma: weight of the forget term.
        alpha: weight of the retain term (skipped when the batch has no retain part).
        retain_loss: ``"nll"``, ``"kl"`` (KL(p_ref || p_theta) on retain answers; needs a reference) or None.

    Logs ``forget_loss``, ``retain_loss`` and ``forget_nll`` (the token-mean answer NLL of the forget batch).
    """

    def __init__(
        self, beta: float = 1.0, gamma: float = 1.0, alpha: float = 1.0, retain_loss: str | None = "nll"
    ) -> None:
        super().__init__(gamma, alpha, retain_loss)
        if beta < 0:
            raise InputError(f"WGA: beta must be >= 0, got {beta}")
        self.beta = beta

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        forget = require_split(batch, "forget", type(self).__name__)
        if self.needs_reference:
            reference = self.require_reference(reference)
        logp, mask = answer_logprobs(policy_logits(policy, forget), forget["labels"])
        per_sample = weighted_ascent(logp, wga_weights(logp, self.beta), mask)
        logs = {"forget_nll": -token_shares(logp, mask).mean()}
        return self.combine(policy, batch, reference, per_sample, logs)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, gamma={self.gamma}, alpha={self.alpha}, retain_loss={self.retain_loss!r}"
