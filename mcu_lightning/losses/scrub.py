"""SCRUB (Kurmanji et al., 2023, "Towards Unbounded Machine Unlearning"): a student that moves away from its
teacher on the forget set and stays with it on the retain set.

The teacher is the frozen starting model (the module's ``reference``). Training alternates

* max-steps on the forget set:  ``loss = -T^2 KL(p_teacher^T || p_student^T)``
* min-steps on the retain set:  ``loss = alpha * T^2 KL(p_teacher^T || p_student^T) + gamma * CE(retain)``

with ``p^T = softmax(logits / T)`` and ``T = kd_T`` (4 in the authors' code, ``DistillKL`` scaled by ``T^2`` as in
Hinton et al., 2015). Names follow the paper: ``alpha`` weights the retain distillation term and ``gamma`` the
retain cross-entropy (authors' defaults 0.001 and 0.99).

The authors alternate whole epochs (``msteps`` epochs of forget passes interleaved with retain passes, then retain
passes only). Here the unit is the training step the module announces through ``on_train_step(step)``:
step ``s`` is a max-step when ``s % max_every == 0`` and (``max_steps_until`` is None or ``s < max_steps_until``);
every other step is a min-step. ``max_every=2`` gives max, min, max, min, ...; ``max_steps_until=100`` keeps only
min-steps from step 100 on, like the authors' ``msteps``.

For causal LMs the KL is taken per answer token (positions predicting a label that is not -100) and averaged over
the answer tokens; for classifiers it is summed over classes and averaged over samples (``DistillKL``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy, logits_of
from mcu_lightning.core.per_sample import IGNORE_INDEX, batch_nll
from mcu_lightning.losses.base import LossOutput, UnlearningLoss
from mcu_lightning.losses.nll import require_split


def distillation_kl(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Per-sample ``KL(softmax(t/T) || softmax(s/T))`` summed over its positions, and the number of positions.

    Classification logits ``[B, C]``: one position a sample (``labels`` unused). Causal-LM logits ``[B, L, V]``:
    the positions ``i < L-1`` whose next label ``labels[:, i+1]`` is not -100 (the answer tokens, as in
    ``per_sample.token_nll``). Returns ``(kl_sum[B], count[B])``; the teacher side carries no gradient.
    """
    teacher_logp = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    student_logp = F.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(dim=-1)
    if kl.dim() == 1:
        return kl, torch.ones_like(kl)
    if labels is None:
        raise InputError("a causal-LM KL needs the sub-batch's `labels` to pick the answer tokens")
    mask = (labels[:, 1:] != IGNORE_INDEX).to(kl.dtype)
    kl = kl[:, :-1] * mask
    return kl.sum(dim=1), mask.sum(dim=1)


def kl_terms(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """``(batch_kl, shares[B])``: the KL averaged over all positions of the batch, and each sample's share of it.

    ``share_i = B * KL_i / sum_j n_j`` (``KL_i`` summed over the ``n_i`` positions of sample i), so
    ``mean(shares) == batch_kl``, the per-sample contract of ``nll.nll_shares`` that SuperLoss relies on. For
    classification ``share_i`` is the sample's KL.
    """
    total, count = distillation_kl(student_logits, teacher_logits, labels, temperature)
    shares = total * total.numel() / count.sum().clamp_min(1)
    return shares.mean(), shares


class SCRUB(UnlearningLoss):
    """SCRUB: max-steps ``-T^2 KL(teacher || student)`` on forget, min-steps ``alpha T^2 KL + gamma CE`` on retain.

    Args:
        alpha: weight of the retain distillation term ``T^2 KL(teacher || student)`` (paper's alpha).
        gamma: weight of the retain cross-entropy (paper's gamma).
        kd_T: distillation temperature T.
        max_every: step ``s`` is a max-step when ``s % max_every == 0`` (1: every step, 2: every other step).
        max_steps_until: no max-step from this step on (None: max-steps throughout; 0: never).
    """

    needs_reference = True

    def __init__(
        self,
        alpha: float = 0.001,
        gamma: float = 0.99,
        kd_T: float = 4.0,
        max_every: int = 2,
        max_steps_until: int | None = None,
    ) -> None:
        super().__init__()
        if max_every < 1:
            raise InputError(f"SCRUB max_every must be >= 1, got {max_every}; use max_steps_until=0 for no max-steps")
        if kd_T <= 0:
            raise InputError(f"SCRUB kd_T must be positive, got {kd_T}")
        self.alpha = alpha
        self.gamma = gamma
        self.kd_T = kd_T
        self.max_every = max_every
        self.max_steps_until = max_steps_until
        self.current_step = 0

    @property
    def forget_weight(self) -> float:
        """Max-steps: ``loss = forget_weight * per_sample.mean()`` with ``per_sample = -T^2 KL`` shares."""
        return 1.0

    def on_train_step(self, step: int) -> None:
        self.current_step = step

    def is_max_step(self, step: int | None = None) -> bool:
        """Whether ``step`` (default: the last announced one) is a max-step on the forget set."""
        step = self.current_step if step is None else step
        if self.max_steps_until is not None and step >= self.max_steps_until:
            return False
        return step % self.max_every == 0

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        reference = self.require_reference(reference)
        scale = self.kd_T**2
        if self.is_max_step():
            forget = require_split(batch, "forget", type(self).__name__)
            student = logits_of(policy(forget))
            with torch.no_grad():
                teacher = logits_of(reference(forget))
            kl, shares = kl_terms(student, teacher, forget.get("labels"), self.kd_T)
            per_sample = -scale * shares
            loss = self.forget_weight * per_sample.mean()
            logs = {"phase": torch.tensor(1.0), "forget_loss": loss.detach(), "forget_kl": kl.detach()}
            return LossOutput(loss=loss, logs=logs, per_sample=per_sample)

        retain = batch.get("retain")
        if retain is None:
            raise InputError(
                "SCRUB min-steps train on the retain set but the batch has no 'retain' part; "
                "enable the data module's retain set (or set max_every=1 for forget-only max-steps)"
            )
        student = logits_of(policy(retain))
        with torch.no_grad():
            teacher = logits_of(reference(retain))
        kl, _ = kl_terms(student, teacher, retain.get("labels"), self.kd_T)
        ce = batch_nll(student, retain["labels"])
        loss = self.alpha * scale * kl + self.gamma * ce
        logs = {
            "phase": torch.tensor(0.0),
            "retain_loss": loss.detach(),
            "retain_kl": kl.detach(),
            "retain_ce": ce.detach(),
        }
        return LossOutput(loss=loss, logs=logs)
