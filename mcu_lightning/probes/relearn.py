"""Relearning attack: does a few steps of fine-tuning bring the forgotten knowledge back?

Hu et al. (2024, arXiv 2406.13356) and Lynch et al. (2024) show that unlearned LLMs recover the forget set after a
few steps of fine-tuning on a little of it, or even on related "benign" data. The probe fine-tunes a deep copy of
the model for ``steps`` optimizer steps on a seeded ``fraction`` of an evaluation split (``forget``: a targeted
attack; ``retain``/``holdout``: benign relearning) with the answer NLL, evaluates the suite on ``eval_splits`` and
reports each metric after relearning and its ``<metric>_recovery = after - before``. The copy is then discarded.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import nn
from torch.utils.data import DataLoader, Subset

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import call_model, kv_cache_off
from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.metrics.suite import MetricSuite
from mcu_lightning.probes.base import (
    Probe,
    ProbeContext,
    metric_filter,
    model_device,
    suite_metric_direction,
    with_recovery,
)


class Relearn(Probe):
    """Fine-tune a copy for ``steps`` steps on ``fraction`` of ``split``, then run the suite on ``eval_splits``.

    Args:
        split: the relearn set's evaluation split (``forget``; ``retain`` or ``holdout`` for benign relearning).
        fraction: the share of the split's samples relearned on (a seeded draw; at least one sample).
        steps: optimizer steps (the loader cycles when ``steps`` exceeds one pass).
        batch_size: samples per step.
        lr: learning rate of ``optimizer`` (a ``torch.optim`` class name).
        weight_decay: the optimizer's weight decay.
        seed: seeds the draw of the relearn set, its order and any dropout (stream ``probe/<name>``,
            :meth:`~mcu_lightning.probes.base.Probe.generator`; the same for every model probed).
        eval_splits: the splits evaluated after relearning (default: the forget split).
        metrics: the suite metrics reported (default: every metric of ``eval_splits`` and forget quality).
    """

    def __init__(
        self,
        name: str = "relearn",
        every: int = 1,
        split: str = "forget",
        fraction: float = 1.0,
        steps: int = 10,
        batch_size: int = 8,
        lr: float = 1e-3,
        optimizer: str = "AdamW",
        weight_decay: float = 0.0,
        seed: int = 0,
        eval_splits: Sequence[str] = ("forget",),
        metrics: Sequence[str] | None = None,
    ) -> None:
        super().__init__(name, every)
        if not 0.0 < fraction <= 1.0:
            raise InputError(f"probe '{name}': fraction={fraction}; relearn on a share in (0, 1] of split '{split}'")
        if steps < 1 or batch_size < 1:
            raise InputError(f"probe '{name}': steps={steps}, batch_size={batch_size}; both must be at least 1")
        if not isinstance(getattr(torch.optim, optimizer, None), type):
            raise InputError(f"probe '{name}': optimizer={optimizer!r} is not a torch.optim class (e.g. AdamW, SGD)")
        self.split, self.fraction, self.steps, self.batch_size = split, fraction, steps, batch_size
        self.lr, self.optimizer, self.weight_decay, self.seed = lr, optimizer, weight_decay, seed
        self.eval_splits = list(eval_splits)
        self.keep = metric_filter(self.eval_splits, metrics)

    def run(self, model: nn.Module, context: ProbeContext) -> dict[str, float]:
        attacker = copy.deepcopy(model)
        try:
            generator = self.generator(self.seed)
            self.relearn(attacker, self.relearn_batches(context, model_device(model), generator), generator)
            after = context.evaluate(attacker.eval(), self.eval_splits)
        finally:
            del attacker
        return with_recovery(after, context.before.aggregates, self.keep)

    def relearn_batches(
        self, context: ProbeContext, device: torch.device, generator: torch.Generator
    ) -> Iterator[Mapping[str, Any]]:
        """``steps`` batches from a ``fraction`` of the split drawn from ``generator``, reshuffled each pass."""
        source = context.split_loader(self.split)
        dataset = source.dataset
        count = max(1, round(self.fraction * len(dataset)))
        chosen = torch.randperm(len(dataset), generator=generator)[:count].tolist()
        loader = DataLoader(
            Subset(dataset, chosen),
            batch_size=self.batch_size,
            shuffle=True,
            generator=generator,
            collate_fn=source.collate_fn,
        )
        produced = 0
        while produced < self.steps:
            for batch in loader:
                yield move_data_to_device(batch, device)
                produced += 1
                if produced == self.steps:
                    return

    def relearn(self, model: nn.Module, batches: Iterator[Mapping[str, Any]], generator: torch.Generator) -> None:
        """Fine-tune every floating parameter of ``model`` in place with the batch answer NLL."""
        # dropout: the global RNG from the probe's stream (the caller forks the RNG, so the run's streams stay put)
        torch.manual_seed(int(torch.randint(2**62, (), generator=generator)))
        params = [p for p in model.parameters() if p.is_floating_point()]
        for param in params:
            param.requires_grad_(True)
        optimizer = getattr(torch.optim, self.optimizer)(params, lr=self.lr, weight_decay=self.weight_decay)
        model.train()
        with torch.enable_grad(), kv_cache_off(model):
            for batch in batches:
                loss = batch_nll(call_model(model, batch), batch["labels"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    def higher_is_better(self, metric: str, suite: MetricSuite) -> str | bool | None:
        return suite_metric_direction(metric, suite)
