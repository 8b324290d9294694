"""SatImp (Yang et al., 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning", ICML 2025;
open-unlearning ``src/trainer/unlearn/satimp.py``, ``compute_satimp_loss`` in ``src/trainer/utils.py``).

Gradient ascent reweighted per answer token by saturation (``p^beta1``: tokens still likely) times importance
(``(1 - p)^beta2``: tokens not yet certain), the weights held constant (no gradient):

    forget term = mean over the batch's answer tokens of  sg(p_t^beta1 * (1 - p_t)^beta2) * log p_t

The loss is ``gamma * forget term + alpha * retain term``. Defaults ``beta1=5, beta2=1, gamma=0.1, alpha=1``,
retain NLL, are open-unlearning's shipped ``configs/trainer/SatImp.yaml`` (its class defaults, ``gamma=1,
alpha=0.1``, are overridden there); open-unlearning computes the same quantity.

On a model that knows the forget answers (``p_t -> 1``) the weights ``p^5 (1 - p)`` vanish, so at these defaults
SatImp moves slowly there: on the quickstart base (forget probability 0.995) its shipped config leaves 0.993 after
5 epochs, where WGA reaches 0.15.
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
from mcu_lightning.losses.wga import weighted_ascent


def satimp_weights(logp: Tensor, beta1: float = 5.0, beta2: float = 1.0) -> Tensor:
    """SatImp's token weights ``p^beta1 * (1 - p)^beta2``, detached."""
    p = torch.exp(logp.detach())
    return p**beta1 * (1.0 - p) ** beta2


class SatImp(ForgetRetainLoss):
    """``gamma * mean_t sg(p_t^beta1 (1 - p_t)^beta2) log p_t + alpha * retain term``.

    Args:
        beta1: exponent of the saturation weight ``p^beta1``.
        beta2: exponent of the importance weight ``(1 - p)^beta2``.
        gamma: weight of the forget term.
        alpha: weight of the retain term (skipped when the batch has no retain part).
        retain_loss: ``"nll"``, ``"kl"`` (needs a reference) or None.
    """

    def __init__(
        self,
        beta1: float = 5.0,
        beta2: float = 1.0,
        gamma: float = 0.1,
        alpha: float = 1.0,
        retain_loss: str | None = "nll",
    ) -> None:
        super().__init__(gamma, alpha, retain_loss)
        if beta1 < 0 or beta2 < 0:
            raise InputError(f"SatImp: beta1 and beta2 must be >= 0, got {beta1}, {beta2}")
        self.beta1, self.beta2 = beta1, beta2

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        forget = require_split(batch, "forget", type(self).__name__)
        if self.needs_reference:
            reference = self.require_reference(reference)
        logp, mask = answer_logprobs(policy_logits(policy, forget), forget["labels"])
        per_sample = weighted_ascent(logp, satimp_weights(logp, self.beta1, self.beta2), mask)
        logs = {"forget_nll": -token_shares(logp, mask).mean()}
        return self.combine(policy, batch, reference, per_sample, logs)

    def extra_repr(self) -> str:
        return (
            f"beta1={self.beta1}, beta2={self.beta2}, gamma={self.gamma}, alpha={self.alpha}, "
            f"retain_loss={self.retain_loss!r}"
        )
