"""A test-only callback: each rank saves its trainable tensors at the end of fit, for cross-rank comparisons."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import Callback


class DumpTrainable(Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_fit_end(self, trainer, pl_module) -> None:
        tensors = {name: p.detach().cpu().clone() for name, p in pl_module.named_parameters() if p.requires_grad}
        Path(self.dirpath).mkdir(parents=True, exist_ok=True)
        torch.save(tensors, os.path.join(self.dirpath, f"rank{trainer.global_rank}.pt"))
