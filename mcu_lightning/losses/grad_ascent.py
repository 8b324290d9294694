"""Gradient ascent (NegGrad): maximise the likelihood loss on the forget set.

Forget term ``-NLL(forget)`` (Jang et al., 2023; the "GA" baseline of TOFU, Maini et al., 2024), no
retain term. Minimising it drives the forget answers' probability down without bound, which is why the
other objectives add a retain term or bound the forget term (NPO).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcu_lightning.core.forward import Policy
from mcu_lightning.losses.base import LossOutput, UnlearningLoss
from mcu_lightning.losses.forget_retain import forget_retain_output
from mcu_lightning.losses.nll import nll_shares, policy_logits, require_split


class GradAscent(UnlearningLoss):
    """``loss = -NLL(forget)``; ``per_sample`` holds each sample's share ``-B * S_i / sum_j |y_j|``.

    Logs ``forget_loss`` (the term minimised, ``-NLL``) and ``forget_nll`` (``NLL(forget)``, rising as it forgets).
    """

    forget_weight: float = 1.0

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        forget = require_split(batch, "forget", type(self).__name__)
        shares = nll_shares(policy_logits(policy, forget), forget["labels"])
        return forget_retain_output(-shares, logs={"forget_nll": shares.mean()})
