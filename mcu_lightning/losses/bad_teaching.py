"""Bad Teaching (Chundawat et al., 2023, "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using an
Incompetent Teacher"): the student distils a competent teacher on the retain set and an incompetent one on the
forget set.

    loss = alpha * KL(p_ref^T || p_student^T)[retain] + gamma * KL(p_bad^T || p_student^T)[forget]

with ``p^T = softmax(logits / T)``, ``T = kl_temperature`` (1 in the authors' code), the competent teacher
``p_ref`` the original model (the module's ``reference``) and the incompetent teacher ``p_bad`` a randomly
initialised copy of the model, built once in ``setup_model``. The authors mix forget and retain samples in one
batch and take ``F.kl_div``'s element mean; here the two sets come as separate sub-batches, so each KL is the proper
per-sample KL (summed over classes, or averaged over answer tokens for causal LMs) averaged over its sub-batch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy, call_model, logits_of
from mcu_lightning.losses.base import LossOutput, UnlearningLoss
from mcu_lightning.losses.nll import require_split
from mcu_lightning.losses.scrub import kl_terms

#: added to ``seed`` so the teacher's draws differ from a model initialised right after ``torch.manual_seed(seed)``
_SEED_OFFSET = 0xBAD7EAC


def random_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A frozen, randomly re-initialised deep copy of ``model`` (eval mode, ``requires_grad=False``).

    A Hugging Face ``PreTrainedModel`` is re-initialised with its own ``_init_weights`` (the model's init scheme);
    any other model by calling ``reset_parameters()`` on every submodule that has it. The global RNG is untouched.
    """
    teacher = copy.deepcopy(model)
    devices = sorted({p.device.index or 0 for p in teacher.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(_SEED_OFFSET + seed)
        init_weights = getattr(teacher, "_init_weights", None)
        if init_weights is not None and hasattr(teacher, "config"):
            for tensor in [*teacher.parameters(), *teacher.buffers()]:
                if getattr(tensor, "_is_hf_initialized", False):
                    tensor._is_hf_initialized = False  # transformers v5 skips tensors flagged as loaded
            teacher.apply(init_weights)
            if hasattr(teacher, "tie_weights"):
                teacher.tie_weights()
        else:
            resettable = [module for module in teacher.modules() if callable(getattr(module, "reset_parameters", None))]
            if not resettable:
                raise InputError(
                    f"cannot build a random teacher from {type(model).__name__}: none of its submodules has "
                    "`reset_parameters()`; give the model standard layers (nn.Linear, nn.Conv2d, ...) or subclass "
                    "BadTeaching and override `setup_model`"
                )
            for module in resettable:
                module.reset_parameters()
    teacher.requires_grad_(False)
    return teacher.eval()


class BadTeaching(UnlearningLoss):
    """Distil the original model on retain and a randomly initialised teacher on forget (KL at ``kl_temperature``).

    Args:
        alpha: weight of the retain term ``KL(p_ref || p_student)``.
        gamma: weight of the forget term ``KL(p_bad || p_student)``.
        kl_temperature: softmax temperature T of both KL terms.
        seed: seed of the incompetent teacher's initialisation.
    """

    needs_reference = True

    def __init__(self, alpha: float = 1.0, gamma: float = 1.0, kl_temperature: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if kl_temperature <= 0:
            raise InputError(f"BadTeaching kl_temperature must be positive, got {kl_temperature}")
        self.alpha = alpha
        self.gamma = gamma
        self.kl_temperature = kl_temperature
        self.seed = seed
        # kept in a list so it is not a submodule: it is rebuilt from the seed, not checkpointed or optimised
        self._incompetent: list[nn.Module] = []

    @property
    def forget_weight(self) -> float:
        """``loss = forget_weight * per_sample.mean() + alpha * retain KL`` (the SuperLoss contract)."""
        return self.gamma

    @property
    def incompetent_teacher(self) -> nn.Module:
        if not self._incompetent:
            raise RuntimeError(
                "BadTeaching has no incompetent teacher yet; the module builds it by calling "
                "`loss.setup_model(model)` before training"
            )
        return self._incompetent[0]

    def setup_model(self, model: nn.Module, forget_loader: Iterable[Mapping[str, Any]] | None = None) -> None:
        """Build the incompetent teacher: a frozen random re-initialisation of ``model`` seeded by ``seed``."""
        self._incompetent = [random_copy(model, self.seed)]

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        reference = self.require_reference(reference)
        forget = require_split(batch, "forget", type(self).__name__)
        student = logits_of(policy(forget))
        teacher = self.incompetent_teacher
        first = next(teacher.parameters(), None)
        if first is not None and first.device != student.device:  # built before the model moved to its device
            teacher = self._incompetent[0] = teacher.to(student.device)
        with torch.no_grad():
            bad = call_model(teacher, forget)
        forget_kl, per_sample = kl_terms(student, bad, forget.get("labels"), self.kl_temperature)
        loss = self.gamma * per_sample.mean()
        logs = {"forget_loss": forget_kl.detach(), "forget_kl": forget_kl.detach()}

        retain = batch.get("retain")
        if retain is not None and self.alpha != 0:
            student = logits_of(policy(retain))
            with torch.no_grad():
                good = logits_of(reference(retain))
            retain_kl, _ = kl_terms(student, good, retain.get("labels"), self.kl_temperature)
            loss = loss + self.alpha * retain_kl
            logs["retain_loss"] = retain_kl.detach()
            logs["retain_kl"] = retain_kl.detach()
        return LossOutput(loss=loss, logs=logs, per_sample=per_sample)
