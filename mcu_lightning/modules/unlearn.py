"""UnlearningModule: unlearn the forget set from a starting model with a pluggable loss.

The starting model is a path (``save_pretrained`` folder, exported folder, Hub name) or a module. A frozen
reference copy is built only when ``loss.needs_reference``: from ``reference`` when given, else from the
starting model before any step. With LoRA (peft) the reference is the same network with its adapters
switched off, so no second copy is held. ``during_training`` evaluates while unlearning and keeps the best
checkpoint (:class:`~mcu_lightning.callbacks.during_training.EvaluateDuringTraining`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from mcu_lightning.callbacks.during_training import EvaluateDuringTraining
from mcu_lightning.core.forward import call_model, frozen_policy
from mcu_lightning.losses.base import UnlearningLoss
from mcu_lightning.metrics.suite import MetricSuite
from mcu_lightning.models.hf import LoraSpec, apply_lora
from mcu_lightning.modules.finetune import FineTuneModule
from mcu_lightning.modules.frozen import load_frozen
from mcu_lightning.probes.base import Probe


class UnlearningModule(FineTuneModule):
    """Unlearn with ``loss`` on ``{"forget", "retain"}`` batches.

    Args:
        model: the starting model (a path or Hub name, or a module).
        loss: the unlearning objective, e.g. ``mcu_lightning.losses.NPO``.
        reference: where to load the frozen reference from (default: the starting model).
        lora: train LoRA adapters (peft) instead of the full weights.
        seed: the run's seed: the adapters' initialisation is drawn from its ``lora-init`` stream.
        during_training: run the suite every N epochs or steps, log it, keep (and with ``select: best`` use) the
            checkpoint best by a score.
    """

    def __init__(
        self,
        model: nn.Module | str,
        loss: UnlearningLoss,
        reference: str | None = None,
        lora: LoraSpec | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: str = "constant",
        warmup_steps: float = 0,
        suite: MetricSuite | None = None,
        output_dir: str | None = None,
        export: bool = True,
        probes: list[Probe] | None = None,
        during_training: EvaluateDuringTraining | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            model=model,
            loss=loss,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            warmup_steps=warmup_steps,
            suite=suite,
            output_dir=output_dir,
            export=export,
            probes=probes,
        )
        self.save_hyperparameters(ignore=["model", "loss", "suite", "optimizer", "probes", "during_training"])
        self.during_training = during_training
        self.reference_source = reference
        self._reference: list[nn.Module] = []  # a list hides it from state_dict and from the optimizer
        if loss.needs_reference and lora is None:
            self._reference.append(self._build_reference())
        if lora is not None:
            self.model = apply_lora(self.model, lora, seed)
            self.freeze_untrainable()
        self.lora = lora

    def _build_reference(self) -> nn.Module:
        source = self.reference_source or self.model_source
        if source is None:  # the starting model was given as a module: copy it before any step
            return copy.deepcopy(self.model).requires_grad_(False).eval()
        return load_frozen(source, what=f"{type(self.loss).__name__} needs a reference model")

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        """One unlearning step: the loss on the ``{"forget", "retain"}`` batch at the current weights, with the
        frozen reference when the loss needs one (``FineTuneModule.take_step`` logs it and handles divergence)."""
        return self.take_step(self.compute_loss(batch), batch)

    def configure_callbacks(self) -> list[EvaluateDuringTraining]:
        return [self.during_training] if self.during_training is not None else []

    def reference_models(self) -> list[nn.Module]:
        """The loss's frozen reference (none with LoRA: the reference is the model with its adapters off)."""
        return list(self._reference)

    @property
    def reference(self) -> nn.Module | None:
        return self.reference_network()

    def reference_policy(self) -> Any:
        if not self.loss.needs_reference:
            return None
        if self.lora is not None:
            return self._adapter_free_policy
        return frozen_policy(self.reference)

    def _adapter_free_policy(self, batch: Mapping[str, Any]) -> Tensor:
        with torch.no_grad(), self.model.disable_adapter():
            return call_model(self.model, batch)
