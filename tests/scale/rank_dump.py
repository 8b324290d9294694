"""Test-only plug-ins of the DDP tests: a callback with which each rank saves its trainable tensors at the end of fit
(for cross-rank comparisons), and a loss that turns NaN on one rank only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback

from mcu_lightning.losses.base import LossOutput
from mcu_lightning.losses.nll import NLL


class DumpTrainable(Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_fit_end(self, trainer, pl_module) -> None:
        tensors = {name: p.detach().cpu().clone() for name, p in pl_module.named_parameters() if p.requires_grad}
        Path(self.dirpath).mkdir(parents=True, exist_ok=True)
        torch.save(tensors, os.path.join(self.dirpath, f"rank{trainer.global_rank}.pt"))


class NaNOnOneRank(NLL):
    """A test-only loss: the NLL, except on rank 1 at its ``at_call``-th call, where it is NaN (a NaN that one process
    of a DDP run sees and the others do not)."""

    def __init__(self, split: str = "retain", at_call: int = 3) -> None:
        super().__init__(split=split)
        self.at_call, self.calls = at_call, 0

    def forward(self, policy: Any, batch: Any, reference: Any = None) -> LossOutput:
        out = super().forward(policy, batch, reference)
        self.calls += 1
        if torch.distributed.is_initialized() and torch.distributed.get_rank() == 1 and self.calls == self.at_call:
            return LossOutput(out.loss * float("nan"), out.logs)
        return out
