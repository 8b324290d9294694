"""The forget/retain objectives ``gamma * forget_term + alpha * retain_term`` (GradDiff, NPO, SimNPO, IdkDPO,
RandomLabel): their base class, the retain term and the composed output SuperLoss relies on.

The retain term keeps the model useful on the retain set: plain NLL on the retain answers, or KL(p_ref || p_theta)
to the starting model (:func:`~mcu_lightning.losses.kl.kl_to_reference`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mcu_lightning.core.compat import OPEN_UNLEARNING
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.losses.base import LossOutput, UnlearningLoss
from mcu_lightning.losses.kl import kl_all_positions, kl_to_reference
from mcu_lightning.losses.nll import policy_logits

RETAIN_KINDS: tuple[str, ...] = ("nll", "kl")


def check_retain_kind(kind: str | None, owner: str, allow_none: bool = False) -> str | None:
    """Validate a ``retain_loss`` argument (case-insensitive) and return it lower-cased."""
    if kind is None and allow_none:
        return None
    if not isinstance(kind, str) or kind.lower() not in RETAIN_KINDS:
        allowed = [*RETAIN_KINDS, *([None] if allow_none else [])]
        raise InputError(f"{owner}: retain_loss must be one of {allowed}, got {kind!r}")
    return kind.lower()


class ForgetRetainLoss(UnlearningLoss):
    """Base of the objectives ``gamma * forget_term + alpha * retain_term`` (GradDiff, NPO, SimNPO, IdkDPO,
    RandomLabel): it holds the two weights and the retain kind, needs a reference when the retain term is
    KL(p_ref || p_theta), and tells SuperLoss which weight multiplies the per-sample forget term.
    """

    def __init__(self, gamma: float = 1.0, alpha: float = 1.0, retain_loss: str | None = "nll",
                 allow_no_retain: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha
        self.retain_loss = check_retain_kind(retain_loss, type(self).__name__, allow_none=allow_no_retain)

    @property
    def needs_reference(self) -> bool:
        return self.retain_loss == "kl"

    @property
    def forget_weight(self) -> float:
        return self.gamma

    def combine(
        self,
        policy: Policy,
        batch: Mapping[str, Any],
        reference: Policy | None,
        per_sample: Tensor,
        logs: Mapping[str, Tensor] | None = None,
    ) -> LossOutput:
        """The loss of ``batch`` whose per-sample forget term is ``per_sample``: ``gamma * mean(per_sample) + alpha *
        retain term`` (:func:`optional_retain_term` of this loss's kind on the batch's retain part), parts logged."""
        retain = optional_retain_term(policy, batch, self.retain_loss, reference, self.compat)
        return forget_retain_output(per_sample, self.gamma, retain, self.alpha, logs)


def retain_term(
    policy: Policy,
    retain_batch: Mapping[str, Any],
    kind: str = "nll",
    reference: Policy | None = None,
    compat: str = "mcu",
) -> Tensor:
    """The retain term on one sub-batch: ``NLL(retain)`` or ``KL(p_ref || p_theta)`` on the retain answers
    (``compat="open_unlearning"``: the KL over every position, :func:`~mcu_lightning.losses.kl.kl_all_positions`).

    The reference runs under ``torch.no_grad``: it is a fixed target and never receives a gradient.
    """
    logits = policy_logits(policy, retain_batch)
    if kind == "nll":
        return batch_nll(logits, retain_batch["labels"])
    if kind == "kl":
        if reference is None:
            raise InputError("the KL retain term needs a reference model; pass `reference` or use kind='nll'")
        with torch.no_grad():
            ref_logits = policy_logits(reference, retain_batch)
        if compat == OPEN_UNLEARNING:
            return kl_all_positions(logits, ref_logits)
        return kl_to_reference(logits, ref_logits, retain_batch["labels"])
    raise InputError(f"retain term kind must be one of {RETAIN_KINDS}, got {kind!r}")


def optional_retain_term(
    policy: Policy,
    batch: Mapping[str, Any],
    kind: str | None,
    reference: Policy | None = None,
    compat: str = "mcu",
) -> Tensor | None:
    """``retain_term`` on ``batch["retain"]``, or None when the batch has no retain part or ``kind`` is None."""
    if kind is None or batch.get("retain") is None:
        return None
    return retain_term(policy, batch["retain"], kind, reference, compat)


def forget_retain_output(
    per_sample: Tensor,
    gamma: float = 1.0,
    retain: Tensor | None = None,
    alpha: float = 1.0,
    logs: Mapping[str, Tensor] | None = None,
) -> LossOutput:
    """``loss = gamma * mean(per_sample) + alpha * retain`` with the parts logged, detached.

    This is the contract SuperLoss relies on: a loss that reports ``per_sample`` forget terms computes
    ``loss = forget_weight * per_sample.mean() + (terms that do not depend on per_sample)``, with
    ``forget_weight`` (here ``gamma``) an attribute of the loss.
    """
    forget = per_sample.mean()
    loss = gamma * forget
    out_logs = {"forget_loss": forget.detach()}
    if retain is not None:
        loss = loss + alpha * retain
        out_logs["retain_loss"] = retain.detach()
    out_logs.update({key: value.detach() for key, value in (logs or {}).items()})
    return LossOutput(loss=loss, logs=out_logs, per_sample=per_sample)
