"""A module's optimizer and learning-rate schedule, from its ``optimizer``, ``lr_scheduler`` and ``warmup_steps``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lightning.pytorch.cli import OptimizerCallable
from torch import nn

from mcu_lightning.core.errors import InputError


def optimization(
    params: list[nn.Parameter],
    optimizer: OptimizerCallable,
    lr_scheduler: str,
    warmup_steps: float,
    total_steps: Callable[[], int],
) -> Any:
    """What ``configure_optimizers`` returns: the optimizer alone (``constant``, no warmup), or with a per-step
    ``transformers.get_scheduler`` schedule over ``total_steps()`` optimizer steps (asked only then).

    ``warmup_steps`` below 1 is a fraction of all steps; ``constant`` with warmup is ``constant_with_warmup``.
    """
    try:
        built = optimizer(params)
    except ValueError as err:  # torch's own argument checks: "Invalid learning rate: nan"
        raise InputError(f"the optimizer cannot be built ({err}); fix its init_args") from err
    for group in built.param_groups:
        lr = group.get("lr")
        if isinstance(lr, float | int) and not (math.isfinite(lr) and lr > 0):
            raise InputError(f"the optimizer's learning rate is {lr}; give a finite lr above 0 (e.g. 0.001)")
    if lr_scheduler == "constant" and not warmup_steps:
        return built
    from transformers import get_scheduler

    total = total_steps()
    warmup = int(warmup_steps * total) if 0 < warmup_steps < 1 else int(warmup_steps)
    name = "constant_with_warmup" if lr_scheduler == "constant" else lr_scheduler
    scheduler = get_scheduler(name, built, num_warmup_steps=warmup, num_training_steps=total)
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
