"""PDU, primal-dual unlearning (Entesari et al., 2025, "Constrained Entropic Unlearning: A Primal-Dual Framework
for Large Language Models", arXiv:2506.05314; open-unlearning ``src/trainer/unlearn/pdu.py``).

Unlearning as a constrained problem: flatten the forget answers' next-token distributions subject to the retain
loss staying below ``eps``, solved by gradient descent on the Lagrangian and ascent on its multiplier:

    forget term   F = mean over answer tokens of  (max_v z_t,v - mean_v z_t,v)^2      (a logit-gap surrogate of
                                                                                     maximal entropy)
    loss          gamma * F + lambda * (R_retain - eps)
    dual step     lambda <- max(0, lambda + dual_step_size * (R_retain - eps))       after each training forward

``R_retain`` is the retain NLL (or KL to the reference), ``lambda`` starts at ``alpha`` and is the retain weight
(open-unlearning's ``retain_preference``); with ``primal_dual=False`` it stays ``alpha`` and PDU is a plain
weighted sum. ``lambda`` is a buffer, so a resumed run continues from it; under DDP the dual step uses the retain
loss averaged over the processes, so every process holds the same ``lambda``.

Defaults are open-unlearning's ``configs/trainer/PDU.yaml``: ``gamma=1, alpha=1, dual_step_size=1``, primal-dual
on, dual updates every step; ``retain_loss_eps`` has no default there (``???``) and none here. Two differences:

* the warm-up (no dual update) is counted in optimizer steps, ``dual_warmup_steps``, since a loss does not see the
  epoch; open-unlearning's ``dual_warmup_epochs: 5`` is ``5 * ceil(|forget| / (batch size * accumulation))``
  steps (65 for TOFU forget10 at its 8 x 4); ``dual_update_upon: epoch`` (a full retain pass per epoch) is not
  offered;
* ``F`` averages over the logits that predict answer tokens (the one-step shift, as every loss here);
  open-unlearning averages the logits *at* answer positions (``labels != -100`` unshifted), one position later:
  it counts the logit after the last answer token and leaves out the one predicting the first. With
  ``compat: open_unlearning`` (:mod:`mcu_lightning.core.compat`) ``F`` is open-unlearning's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mcu_lightning.core.compat import OPEN_UNLEARNING
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.core.per_sample import IGNORE_INDEX, answer_positions, token_shares
from mcu_lightning.losses.base import LossOutput
from mcu_lightning.losses.forget_retain import ForgetRetainLoss, forget_retain_output, retain_term
from mcu_lightning.losses.nll import policy_logits, require_split


def logit_gap(logits: Tensor) -> Tensor:
    """PDU's per-position forget surrogate ``(max_v z_v - mean_v z_v)^2`` (0 for a uniform distribution)."""
    z = logits.float()
    return (z.max(dim=-1).values - z.mean(dim=-1)) ** 2


def process_mean(value: Tensor) -> float:
    """``value`` averaged over the processes of a ``torch.distributed`` run (itself otherwise), so every process takes
    the same dual step and the multiplier stays one number (open-unlearning lets each process step on its own)."""
    value = value.detach().float().clone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(value)
        value /= torch.distributed.get_world_size()
    return float(value)


class PDU(ForgetRetainLoss):
    """``gamma * mean_t (max z_t - mean z_t)^2 + lambda * (R_retain - eps)`` with dual ascent on ``lambda``.

    Args:
        retain_loss_eps: the retain-loss bound ``eps`` of the constraint ``R_retain <= eps`` (required).
        primal_dual: update ``lambda`` by dual ascent (False: fixed at ``alpha``).
        dual_step_size: the dual ascent step.
        dual_warmup_steps: optimizer steps before the first dual update.
        dual_update_upon: ``"step"`` (the only mode offered; see the module docstring).
        gamma: weight of the forget term.
        alpha: the starting retain weight ``lambda``.
        retain_loss: ``"nll"`` or ``"kl"`` (needs a reference).

    Logs ``forget_loss``, ``retain_loss`` (``R_retain - eps``) and ``retain_preference`` (``lambda`` used).
    """

    def __init__(
        self,
        retain_loss_eps: float,
        primal_dual: bool = True,
        dual_step_size: float = 1.0,
        dual_warmup_steps: int = 0,
        dual_update_upon: str = "step",
        gamma: float = 1.0,
        alpha: float = 1.0,
        retain_loss: str = "nll",
    ) -> None:
        super().__init__(gamma, alpha, retain_loss, allow_no_retain=False)
        if dual_update_upon != "step":
            raise InputError(
                f"PDU: dual_update_upon must be 'step', got {dual_update_upon!r} (the per-epoch update needs a full "
                "retain pass, which a loss cannot run; use dual_warmup_steps to delay the per-step updates)"
            )
        if dual_step_size < 0 or dual_warmup_steps < 0 or alpha < 0:
            raise InputError("PDU: dual_step_size, dual_warmup_steps and alpha must be >= 0")
        self.retain_loss_eps = float(retain_loss_eps)
        self.primal_dual = primal_dual
        self.dual_step_size = dual_step_size
        self.dual_warmup_steps = dual_warmup_steps
        self.dual_update_upon = dual_update_upon
        self.register_buffer("retain_preference", torch.tensor(float(alpha), dtype=torch.float64))
        self._step = 0

    def on_train_step(self, step: int) -> None:
        self._step = step

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        forget = require_split(batch, "forget", type(self).__name__)
        retain_batch = require_split(batch, "retain", type(self).__name__)
        if self.needs_reference:
            reference = self.require_reference(reference)
        logits = policy_logits(policy, forget)
        if self.compat == OPEN_UNLEARNING and logits.dim() == 3:  # the logits at the answer positions, unshifted
            z, mask = logits, forget["labels"] != IGNORE_INDEX
        else:
            z, _, mask = answer_positions(logits, forget["labels"])
        per_sample = token_shares(logit_gap(z), mask)
        slack = retain_term(policy, retain_batch, self.retain_loss, reference, self.compat) - self.retain_loss_eps
        weight = float(self.retain_preference)
        out = forget_retain_output(per_sample, self.gamma, slack, weight, {"retain_preference": torch.tensor(weight)})
        if self.primal_dual and self.training and torch.is_grad_enabled() and self._step >= self.dual_warmup_steps:
            self.retain_preference.fill_(max(0.0, weight + self.dual_step_size * process_mean(slack)))
        return out

    def extra_repr(self) -> str:
        return (
            f"retain_loss_eps={self.retain_loss_eps}, primal_dual={self.primal_dual}, "
            f"dual_step_size={self.dual_step_size}, dual_warmup_steps={self.dual_warmup_steps}, gamma={self.gamma}, "
            f"alpha={self.alpha}, retain_loss={self.retain_loss!r}"
        )
