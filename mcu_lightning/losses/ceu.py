"""CE-U, Cross Entropy Unlearning (Yang et al., 2025, "CE-U: Cross Entropy Unlearning", arXiv:2503.01224;
open-unlearning ``src/trainer/unlearn/ceu.py``).

Cross-entropy towards the model's own distribution with the answer token removed, the target held constant:

    q_t = softmax(sg(z_t) with z_t,y_t = -inf),   forget term = mean over answer tokens of  -sum_v q_t,v log p_t,v

Its gradient in the logits is ``p_t - q_t``: the answer token's logit is pushed down by ``p_t,y_t`` (no gradient
blow-up as ``p -> 0``, unlike gradient ascent) and the other tokens keep their relative odds. The first
``ignore_first_n_answer_tokens`` answer tokens of each sample are left out (the paper's footnote in its training
settings; open-unlearning's default 1), for causal LMs only. Loss: ``gamma * forget term + alpha * retain term``;
open-unlearning's CE-U (``configs/trainer/CEU.yaml``) has no retain term, hence the default ``retain_loss=None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.core.per_sample import answer_positions, token_shares
from mcu_lightning.losses.base import LossOutput
from mcu_lightning.losses.forget_retain import ForgetRetainLoss
from mcu_lightning.losses.nll import policy_logits, require_split
from mcu_lightning.losses.undial import soft_cross_entropy


def ceu_targets(logits: Tensor, tokens: Tensor) -> Tensor:
    """``softmax(z)`` with the answer token's probability set to 0 and the rest renormalised, detached."""
    masked = logits.detach().float().scatter(-1, tokens.unsqueeze(-1), float("-inf"))
    return F.softmax(masked, dim=-1)


def skip_first_answer_tokens(mask: Tensor, n: int) -> Tensor:
    """``mask [B, T]`` without each row's first ``n`` counted positions."""
    return mask & (mask.cumsum(dim=1) > n)


class CEU(ForgetRetainLoss):
    """``gamma * mean_t CE(q_t, p_t) + alpha * retain term``, ``q_t`` the model's distribution without the answer token.

    Args:
        ignore_first_n_answer_tokens: answer tokens left out at the start of each answer (causal LMs).
        gamma: weight of the forget term.
        alpha: weight of the retain term.
        retain_loss: None (open-unlearning's CE-U), ``"nll"`` or ``"kl"``.
    """

    def __init__(
        self,
        ignore_first_n_answer_tokens: int = 1,
        gamma: float = 1.0,
        alpha: float = 1.0,
        retain_loss: str | None = None,
    ) -> None:
        super().__init__(gamma, alpha, retain_loss)
        if ignore_first_n_answer_tokens < 0:
            raise InputError(f"CEU: ignore_first_n_answer_tokens must be >= 0, got {ignore_first_n_answer_tokens}")
        self.ignore_first_n_answer_tokens = ignore_first_n_answer_tokens

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        forget = require_split(batch, "forget", type(self).__name__)
        if self.needs_reference:
            reference = self.require_reference(reference)
        logits = policy_logits(policy, forget)
        z, y, mask = answer_positions(logits, forget["labels"])
        if logits.dim() == 3:
            mask = skip_first_answer_tokens(mask, self.ignore_first_n_answer_tokens)
        per_sample = token_shares(soft_cross_entropy(z, ceu_targets(z, y)), mask)
        logp = F.log_softmax(z.detach().float(), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        logs = {"forget_nll": -token_shares(logp, mask).mean()}
        return self.combine(policy, batch, reference, per_sample, logs)

    def extra_repr(self) -> str:
        return (
            f"ignore_first_n_answer_tokens={self.ignore_first_n_answer_tokens}, gamma={self.gamma}, "
            f"alpha={self.alpha}, retain_loss={self.retain_loss!r}"
        )
