"""UNDIAL (Dong et al., 2024, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large
Language Models"; open-unlearning ``src/trainer/unlearn/undial.py``, ``compute_undial_loss`` in
``src/trainer/utils.py``).

Self-distillation towards the starting model's logits with the answer token's logit lowered by ``beta``:

    q_t = softmax(z_ref,t - beta * onehot(y_t)),   forget term = mean over answer tokens of  CE(q_t, p_theta,t)
        = -sum_v q_t,v log p_theta,t,v

The target is fixed (the reference runs without gradient), so unlike gradient ascent the term is bounded and the
model stops moving once it matches the adjusted teacher. Loss: ``gamma * forget term + alpha * retain term``;
defaults ``beta=10, gamma=1, alpha=0``, retain NLL, are open-unlearning's ``configs/trainer/UNDIAL.yaml``.

Differences from open-unlearning, both where its code departs from the paper: it averages the cross-entropy over
every position of the batch (prompt and padding too, as ``CrossEntropyLoss(reduction="none").mean()``), and at
the prompt/padding positions its label -100 indexes the one-hot from the end of the vocabulary (token ``V - 100``
gets lowered). Here the mean runs over the answer tokens only, like every other loss of this package; on a batch
the two differ by the prompt positions' distillation terms. With ``compat: open_unlearning``
(:mod:`mcu_lightning.core.compat`) the loss is open-unlearning's: every shifted position counts, -100 lowering
token ``V - 100``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mcu_lightning.core.compat import OPEN_UNLEARNING
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.core.per_sample import IGNORE_INDEX, answer_positions, token_shares
from mcu_lightning.losses.base import LossOutput
from mcu_lightning.losses.forget_retain import ForgetRetainLoss
from mcu_lightning.losses.nll import policy_logits, require_split


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """``-sum_v target_v log softmax(logits)_v`` over the last dimension (target probabilities, no gradient)."""
    return -(target.detach() * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)


def undial_targets(ref_logits: Tensor, tokens: Tensor, beta: float = 10.0) -> Tensor:
    """``softmax(z_ref - beta * onehot(y))`` per position: the teacher with the answer token's logit lowered."""
    adjusted = ref_logits.float().scatter_add(
        -1, tokens.unsqueeze(-1), torch.full_like(tokens, -beta, dtype=torch.float32).unsqueeze(-1)
    )
    return F.softmax(adjusted, dim=-1)


def every_position(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """open-unlearning's UNDIAL positions: every shifted position of a causal LM counts, and a label -100 indexes
    the vocabulary from its end (token ``V - 100``, as PyTorch's negative indexing in its ``compute_undial_loss``)."""
    vocab = logits.size(-1)
    if vocab < -IGNORE_INDEX:
        raise InputError(
            f"compat open_unlearning: UNDIAL indexes the label -100 from the vocabulary's end, which needs at least "
            f"100 tokens (open-unlearning's indexing fails on {vocab}); use compat mcu"
        )
    shift_labels = labels[:, 1:]
    tokens = torch.where(shift_labels == IGNORE_INDEX, shift_labels + vocab, shift_labels)
    return logits[:, :-1, :], tokens, torch.ones_like(tokens, dtype=torch.bool)


class UNDIAL(ForgetRetainLoss):
    """``gamma * mean_t CE(softmax(z_ref - beta onehot(y_t)), p_theta) + alpha * retain term``; needs the reference.

    Args:
        beta: how far the answer token's logit is lowered in the teacher (paper's distillation strength).
        gamma: weight of the forget term.
        alpha: weight of the retain term (0 by default, as open-unlearning ships it).
        retain_loss: ``"nll"``, ``"kl"`` or None.
    """

    needs_reference: bool = True

    def __init__(
        self, beta: float = 10.0, gamma: float = 1.0, alpha: float = 0.0, retain_loss: str | None = "nll"
    ) -> None:
        super().__init__(gamma, alpha, retain_loss)
        if beta < 0:
            raise InputError(f"UNDIAL: beta must be >= 0, got {beta}")
        self.beta = beta

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        reference = self.require_reference(reference)
        forget = require_split(batch, "forget", type(self).__name__)
        logits = policy_logits(policy, forget)
        positions = every_position if self.compat == OPEN_UNLEARNING and logits.dim() == 3 else answer_positions
        z, y, mask = positions(logits, forget["labels"])
        with torch.no_grad():
            z_ref, _, _ = positions(policy_logits(reference, forget), forget["labels"])
            target = undial_targets(z_ref, y, self.beta)
        per_sample = token_shares(soft_cross_entropy(z, target), mask)
        logp = F.log_softmax(z.detach().float(), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        logs = {"forget_nll": -token_shares(logp, mask).mean()}
        return self.combine(policy, batch, reference, per_sample, logs)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, gamma={self.gamma}, alpha={self.alpha}, retain_loss={self.retain_loss!r}"
