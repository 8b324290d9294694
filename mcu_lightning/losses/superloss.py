"""SuperLoss (Castells et al., 2020, "SuperLoss: A Generic Loss for Robust Curriculum Learning"), the
curriculum the MCU authors (Cheng & Amiri, 2025) put on unlearning objectives.

Each per-sample loss ``l_i`` gets a confidence ``sigma_i`` minimising
``(l_i - tau) * sigma + lam * (log sigma)^2``; its (local) minimiser has the closed form
``sigma_i* = exp(-W(0.5 * max(-2/e, (l_i - tau) / lam)))`` with ``W`` the principal branch of Lambert W,
so ``sigma* in (0, e]``; the clamp at ``-2/e`` gives ``sigma* = e`` to every very easy sample.
``sigma*`` is treated as a constant (detached), so a sample's gradient is scaled by ``sigma_i*``:
easy samples (``l_i < tau``) weigh more than 1, hard ones less. ``tau`` is a threshold, here the
exponential moving average of the batch-mean loss (initialised from the first batch) or a fixed value.

Contract with the wrapped loss: it reports ``per_sample`` (the forget term per sample, as minimised, so
``-NLL`` shares for gradient ascent) and computes ``loss = forget_weight * per_sample.mean() + rest``
where ``forget_weight`` is its attribute (1.0 when absent) and ``rest`` does not depend on ``per_sample``
(the retain term). SuperLoss keeps ``rest`` and replaces the mean by the SuperLoss of the per-sample terms.
A step on which the wrapped loss reports no ``per_sample`` (e.g. a retain-only step) passes through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.special import lambertw
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.losses.base import LossOutput, UnlearningLoss, WrapperLoss

_BRANCH_POINT = -1.0 / math.e


def superloss_sigma(loss: Tensor, tau: float | Tensor, lam: float = 10.0) -> Tensor:
    """SuperLoss confidences (Castells et al., 2020): ``exp(-W(0.5 * max(-2/e, (l - tau) / lam)))``, detached."""
    y = 0.5 * ((loss.detach().double() - tau) / lam).cpu().numpy()
    # W(-1/e) = -1 is the branch point; scipy returns nan exactly there, so it is set by hand.
    at_branch = y <= _BRANCH_POINT
    w = np.where(at_branch, -1.0, lambertw(np.where(at_branch, 0.0, y), k=0).real)
    return torch.from_numpy(np.exp(-w)).to(device=loss.device, dtype=loss.dtype)


def superloss(loss: Tensor, tau: float | Tensor, lam: float = 10.0) -> Tensor:
    """Per-sample SuperLoss (Castells et al., 2020): ``(l - tau) * sigma* + lam * (log sigma*)^2``."""
    sigma = superloss_sigma(loss, tau, lam)
    return (loss - tau) * sigma + lam * torch.log(sigma) ** 2


class SuperLoss(WrapperLoss):
    """Wrap an unlearning loss with SuperLoss per-sample weights on its forget term.

    Args:
        loss: the wrapped objective; it must report ``per_sample`` (every forget/retain loss of this package does).
        lam: regularisation ``lambda`` of the confidences (10, as the MCU authors); larger is flatter.
        tau: fixed threshold, or None for the moving average of the batch-mean forget term.
        momentum: weight of the old value in the moving average ``tau <- m * tau + (1 - m) * mean(l)``.

    ``tau`` is a buffer (saved in checkpoints) and moves only in training mode. Logs the wrapped loss's parts
    plus ``superloss_tau``, ``superloss_sigma_mean`` and ``forget_superloss`` (the reweighted forget term).
    """

    def __init__(
        self, loss: UnlearningLoss, lam: float = 10.0, tau: float | None = None, momentum: float = 0.9
    ) -> None:
        if lam <= 0:
            raise InputError(f"SuperLoss: lam must be positive, got {lam}")
        if not 0.0 <= momentum < 1.0:
            raise InputError(f"SuperLoss: momentum must be in [0, 1), got {momentum}")
        super().__init__(loss)
        self.lam = lam
        self.fixed_tau = tau
        self.momentum = momentum
        self.register_buffer("tau", torch.tensor(0.0 if tau is None else float(tau), dtype=torch.float64))
        self.register_buffer("tau_initialised", torch.tensor(tau is not None))

    def current_tau(self, per_sample: Tensor) -> Tensor:
        """The threshold for this batch, updating the moving average first when training."""
        if self.fixed_tau is not None:
            return self.tau
        batch_mean = per_sample.detach().double().mean().to(self.tau.device)
        if not self.training:
            return self.tau if bool(self.tau_initialised) else batch_mean
        if bool(self.tau_initialised):
            self.tau.mul_(self.momentum).add_((1.0 - self.momentum) * batch_mean)
        else:
            self.tau.copy_(batch_mean)
            self.tau_initialised.fill_(True)
        return self.tau

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        out = self.loss(policy, batch, reference)
        if out.per_sample is None:
            return out
        per_sample = out.per_sample
        tau = self.current_tau(per_sample).to(device=per_sample.device, dtype=per_sample.dtype)
        sigma = superloss_sigma(per_sample, tau, self.lam)
        weighted = (per_sample - tau) * sigma + self.lam * torch.log(sigma) ** 2
        weight = self.forget_weight
        rest = out.loss - weight * per_sample.mean()
        logs = {
            **out.logs,
            "forget_superloss": weighted.mean().detach(),
            "superloss_tau": tau.detach(),
            "superloss_sigma_mean": sigma.mean(),
        }
        return LossOutput(loss=weight * weighted.mean() + rest, logs=logs, per_sample=weighted)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, tau={self.fixed_tau}, momentum={self.momentum}"
