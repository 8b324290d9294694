"""Helpers of the probe tests: state snapshots and the context a module's test would hand a probe."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mcu_lightning.metrics.suite import MetricSuite
from mcu_lightning.probes import ProbeContext


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def same_state(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    current = model.state_dict()
    return current.keys() == state.keys() and all(torch.equal(current[k], state[k]) for k in state)


def context_for(
    model: nn.Module, suite: MetricSuite, datamodule: object, splits: Sequence[str], references: dict | None = None
) -> ProbeContext:
    """The context a module's test would build: every batch of ``splits``, the suite's result at ``model``."""
    batches = [(split, batch) for split in splits for batch in datamodule.eval_dataloader(split)]
    suite.reset()
    with torch.no_grad():
        suite.update_many(model.eval(), batches)
    return ProbeContext(suite, batches, suite.compute(), datamodule, references or {})
