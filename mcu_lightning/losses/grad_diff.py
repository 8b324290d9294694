"""Gradient difference: gradient ascent on the forget set, descent on the retain set.

``loss = gamma * (-NLL(forget)) + alpha * R(retain)`` with ``R`` the retain NLL or KL(p_ref || p_theta)
(Liu et al., 2022, "Continual learning and private unlearning"; TOFU's "Grad. Diff.", Maini et al., 2024).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcu_lightning.core.forward import Policy
from mcu_lightning.losses.base import LossOutput
from mcu_lightning.losses.forget_retain import ForgetRetainLoss
from mcu_lightning.losses.nll import nll_shares, policy_logits, require_split


class GradDiff(ForgetRetainLoss):
    """``gamma * (-NLL(forget)) + alpha * retain term``; the retain term is skipped when the batch has none.

    Args:
        gamma: weight of the forget term.
        alpha: weight of the retain term.
        retain_loss: ``"nll"`` (retain answers' NLL) or ``"kl"`` (KL to the reference; needs one).
    """

    def __init__(self, gamma: float = 1.0, alpha: float = 1.0, retain_loss: str = "nll") -> None:
        super().__init__(gamma, alpha, retain_loss, allow_no_retain=False)

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        forget = require_split(batch, "forget", type(self).__name__)
        if self.needs_reference:
            reference = self.require_reference(reference)
        shares = nll_shares(policy_logits(policy, forget), forget["labels"])
        return self.combine(policy, batch, reference, -shares, {"forget_nll": shares.mean()})

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, retain_loss={self.retain_loss!r}"
