"""SimNPO (Fan et al., 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning"): NPO without a reference model, with the log-probability normalised by the answer length.

Paper, per sample: ``-(2/beta) * logsigmoid(-(beta/|y|) log pi_theta(y|x) - margin)``; since
``log pi_theta(y|x) = -S(x)`` (summed answer NLL) the argument is ``beta * S/|y| - margin``.
We follow the authors' code (OPTML-Group/Unlearn-Simple) and open-unlearning's ``SimNPO``, which put the
margin inside the product: ``-(2/beta) * logsigmoid(beta * (S/|y| - delta))``, i.e. the paper's margin is
``beta * delta``. ``gamma`` weights the forget term and ``alpha`` the retain term, as in every loss of
this package (``losses/forget_retain.py``); the defaults ``beta=4.5, gamma=0.125, delta=0, alpha=1, retain NLL`` are
open-unlearning's TOFU configuration (its ``gamma`` is Unlearn-Simple's ``npo_coeff``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.core.per_sample import sequence_nll
from mcu_lightning.losses.base import LossOutput
from mcu_lightning.losses.forget_retain import ForgetRetainLoss
from mcu_lightning.losses.nll import policy_logits, require_split


def simnpo_loss(nll_sum: Tensor, length: Tensor, beta: float = 4.5, delta: float = 0.0) -> Tensor:
    """SimNPO (Fan et al., 2024), per sample: ``-(2/beta) * logsigmoid(beta * (S/|y| - delta))``."""
    return -(2.0 / beta) * F.logsigmoid(beta * (nll_sum / length.clamp_min(1) - delta))


class SimNPO(ForgetRetainLoss):
    """``gamma * mean_i simnpo_loss(S_i, |y_i|) + alpha * retain term``; no reference model.

    Args:
        beta: inverse temperature (4.5).
        gamma: weight of the forget term (0.125).
        delta: margin on the length-normalised NLL (0).
        alpha: weight of the retain term (skipped when the batch has no retain part).
        retain_loss: ``"nll"``, ``"kl"`` (needs a reference) or None.
    """

    def __init__(
        self,
        beta: float = 4.5,
        gamma: float = 0.125,
        delta: float = 0.0,
        alpha: float = 1.0,
        retain_loss: str | None = "nll",
    ) -> None:
        super().__init__(gamma, alpha, retain_loss)
        if beta <= 0:
            raise InputError(f"SimNPO: beta must be positive, got {beta}")
        self.beta = beta
        self.delta = delta

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        forget = require_split(batch, "forget", type(self).__name__)
        if self.needs_reference:
            reference = self.require_reference(reference)
        total, count = sequence_nll(policy_logits(policy, forget), forget["labels"])
        per_sample = simnpo_loss(total, count, self.beta, self.delta)
        logs = {"forget_nll": total.sum() / count.sum().clamp_min(1)}
        return self.combine(policy, batch, reference, per_sample, logs)

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, gamma={self.gamma}, delta={self.delta}, alpha={self.alpha}, "
            f"retain_loss={self.retain_loss!r}"
        )
