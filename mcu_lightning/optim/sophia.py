"""SophiaG in the form SOUL uses for second-order unlearning.

Sophia (Liu et al., 2024, "Sophia: A Scalable Stochastic Second-order Optimizer for Language Model Pre-training")
keeps an EMA of the gradient ``m`` and of a diagonal Hessian estimate ``h`` and takes clipped preconditioned steps.
SOUL (Jia et al., 2024, "SOUL: Unlocking the Power of Second-Order Optimization for LLM Unlearning",
github.com/OPTML-Group/SOUL, ``src/optim``) builds it with betas (0.9, 0.95), rho 0.04 and weight decay 0.1 and
its trainer only ever calls ``optimizer.step()``: there is no separate Gauss-Newton-Bartlett pass, the curvature
estimate is the squared mini-batch gradient taken every step. Per parameter, at every step:

    m     <- b1 m + (1 - b1) g
    h     <- b2 h + (1 - b2) g * g
    theta <- theta (1 - lr wd)                                            (decoupled weight decay)
    theta <- theta - lr sign(m) min(|m| / (rho * bs * h + eps), 1)

``bs`` is the token batch size of Sophia's GNB estimator (5120 in the reference code). With ``maximize=True``
``g`` is replaced by ``-g``. The default learning rate 1e-4 is the reference SophiaG's (SOUL's TOFU configs use
5e-6). State (``step``, ``exp_avg``, ``hessian``) is ordinary optimizer state, so Lightning checkpoints it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from mcu_lightning.core.errors import InputError


class SophiaG(Optimizer):
    """Sophia with the squared-gradient curvature estimate updated every step (SOUL's form).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (the largest per-coordinate step).
        betas: EMA coefficients of the gradient and of the curvature estimate.
        rho: clipping scale of the preconditioned step.
        bs: batch size of the curvature estimate (scales ``h``).
        weight_decay: decoupled weight decay coefficient.
        eps: added to the denominator.
        maximize: ascend instead of descend.
        foreach: use the multi-tensor ``torch._foreach_*`` kernels (None or True); False runs a per-tensor loop.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        rho: float = 0.04,
        bs: int = 5120,
        weight_decay: float = 1e-1,
        eps: float = 1e-15,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        if lr < 0:
            raise InputError(f"SophiaG lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise InputError(f"SophiaG betas must lie in [0, 1), got {betas}")
        if rho < 0 or bs <= 0 or weight_decay < 0 or eps < 0:
            raise InputError(
                f"SophiaG needs rho >= 0, bs > 0, weight_decay >= 0, eps >= 0; got rho={rho}, bs={bs}, "
                f"weight_decay={weight_decay}, eps={eps}"
            )
        defaults = dict(
            lr=lr, betas=tuple(betas), rho=rho, bs=bs, weight_decay=weight_decay, eps=eps, maximize=maximize
        )
        defaults["foreach"] = foreach
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, hessians = [], [], [], []
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("SophiaG does not support sparse gradients; use dense embeddings")
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["hessian"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                params.append(param)
                grads.append(param.grad)
                exp_avgs.append(state["exp_avg"])
                hessians.append(state["hessian"])
            if not params:
                continue
            update = _single_tensor_sophiag if group["foreach"] is False else _multi_tensor_sophiag
            update(params, grads, exp_avgs, hessians, **_hyper(group))
        return loss


def _hyper(group: dict[str, Any]) -> dict[str, Any]:
    beta1, beta2 = group["betas"]
    keys = ("lr", "rho", "bs", "weight_decay", "eps", "maximize")
    return {"beta1": beta1, "beta2": beta2, **{key: group[key] for key in keys}}


def _single_tensor_sophiag(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    hessians: list[Tensor],
    *,
    beta1: float,
    beta2: float,
    lr: float,
    rho: float,
    bs: int,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    for param, grad, exp_avg, hess in zip(params, grads, exp_avgs, hessians, strict=True):
        grad = -grad if maximize else grad
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        hess.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if weight_decay != 0:
            param.mul_(1 - lr * weight_decay)
        ratio = (exp_avg.abs() / (hess * (rho * bs) + eps)).clamp_(max=1.0)
        param.addcmul_(exp_avg.sign(), ratio, value=-lr)


def _multi_tensor_sophiag(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    hessians: list[Tensor],
    *,
    beta1: float,
    beta2: float,
    lr: float,
    rho: float,
    bs: int,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    # the foreach kernels need tensors of one device and dtype a call
    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
    for i, param in enumerate(params):
        buckets[(param.device, param.dtype)].append(i)
    for indices in buckets.values():
        p = [params[i] for i in indices]
        g = [grads[i] for i in indices]
        m = [exp_avgs[i] for i in indices]
        h = [hessians[i] for i in indices]
        if maximize:
            g = torch._foreach_neg(g)
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, g, alpha=1 - beta1)
        torch._foreach_mul_(h, beta2)
        torch._foreach_addcmul_(h, g, g, value=1 - beta2)
        if weight_decay != 0:
            torch._foreach_mul_(p, 1 - lr * weight_decay)
        denom = torch._foreach_mul(h, rho * bs)
        torch._foreach_add_(denom, eps)
        ratio = torch._foreach_abs(m)
        torch._foreach_div_(ratio, denom)
        torch._foreach_clamp_max_(ratio, 1.0)
        torch._foreach_addcmul_(p, torch._foreach_sign(m), ratio, value=-lr)
