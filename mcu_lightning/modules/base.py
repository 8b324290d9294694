"""What every LightningModule of the package shares: the training loss's hooks, validation, test, the optimizer.

A subclass says what it trains and evaluates (``eval_model``, ``trained_network``, ``reference_models``,
``probe_references``) and writes ``training_step``; the base does the rest, in the order Lightning calls it:

* ``setup`` hands the data module's tokenizer and ``compat`` to the suite and the training loss;
* a fit runs every hook of the training loss through :class:`~mcu_lightning.modules.lifecycle.LossLifecycle`, and
  ``log_step`` logs what something reads (:mod:`mcu_lightning.modules.step_logs`);
* ``validate`` logs the mean answer NLL of each evaluation split;
* ``test`` runs the metric suite (and the probes) on the named evaluation splits and writes its JSON (aggregates plus
  per-sample values, the file an oracle run hands to later runs for forget quality and privleak);
* ``configure_optimizers`` builds the optimizer and schedule (:mod:`mcu_lightning.modules.optimization`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from mcu_lightning.callbacks.checkpoint import start_epoch_after_last_batch_resume
from mcu_lightning.core import threads
from mcu_lightning.core.compat import check_compat
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import call_model, kv_cache_off
from mcu_lightning.core.names import TEST_METRICS
from mcu_lightning.core.per_sample import mean_nll
from mcu_lightning.metrics.suite import EvalResult, MetricSuite
from mcu_lightning.modules.lifecycle import LossLifecycle, TrainedNetwork
from mcu_lightning.modules.optimization import optimization
from mcu_lightning.modules.step_logs import LOSS, names_to_log
from mcu_lightning.probes.base import Probe, ProbeContext, check_probes, run_probes


class MCUModule(LightningModule):
    """Base of ``FineTuneModule``, ``UnlearningModule`` and ``CurveModule``.

    Args:
        optimizer: any torch optimizer by class path (``mcu_lightning.optim.SophiaG`` too).
        lr_scheduler: a ``transformers.get_scheduler`` name: constant, linear, cosine, ...
        warmup_steps: warmup length in optimizer steps, or a fraction of all steps when below 1.
        suite: the metric suite run by ``test`` (none: ``test`` only logs losses).
        output_dir: where exports and metric files go; default: the logger's ``log_dir``.
        probes: robustness probes ``test`` runs after the suite (``probe/<name>/<metric>`` in the results).
    """

    def __init__(
        self,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: str = "constant",
        warmup_steps: float = 0,
        suite: MetricSuite | None = None,
        output_dir: str | None = None,
        probes: list[Probe] | None = None,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.lr_scheduler = lr_scheduler
        self.warmup_steps = warmup_steps
        self.suite = suite
        self.output_dir_arg = output_dir
        self.last_test_result: EvalResult | None = None
        self.probes = check_probes(probes or [])
        if self.probes and suite is None:
            raise InputError("probes compare against the metric suite's results; set `suite:` next to `probes:`")
        self.lifecycle: LossLifecycle | None = None  # the training loss's hooks; set by the subclass that has one

    # -- what a subclass provides -------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        """The plain model that evaluation runs on."""
        raise NotImplementedError

    def trained_network(self) -> TrainedNetwork:
        """What this module trains, as the loss hooks see it (a plain model, or a curve's control points)."""
        raise NotImplementedError

    def reference_models(self) -> list[nn.Module]:
        """The frozen models a training step runs besides the trained one (the loss's reference); none here.

        A subclass that holds one returns it: it moves to the module's device at the start of a fit and runs
        without a KV cache, and the first is the reference the loss's ``attach`` receives.
        """
        return []

    def probe_references(self) -> dict[str, Mapping[str, Tensor]]:
        """Reference weights by name for probes that measure against them (``base``: the model before unlearning)."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimizer moves."""
        return [p for p in self.parameters() if p.requires_grad]

    # -- where things go --------------------------------------------------------------------------
    @property
    def output_dir(self) -> Path:
        if self.output_dir_arg is not None:
            return Path(self.output_dir_arg)
        trainer = self._trainer
        if trainer is not None and trainer.log_dir is not None:
            return Path(trainer.log_dir)
        return Path(trainer.default_root_dir if trainer is not None else ".")

    @property
    def datamodule(self) -> Any:
        return self.trainer.datamodule

    @property
    def tokenizer(self) -> Any:
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        return getattr(datamodule, "tokenizer", None)

    @property
    def compat(self) -> str:
        """The data module's ``compat`` mode (:mod:`mcu_lightning.core.compat`; ``"mcu"`` when it has none): the one
        switch, handed to the loss and the suite at ``setup``."""
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        return check_compat(getattr(datamodule, "compat", None))

    def eval_split(self, dataloader_idx: int) -> str:
        return self.datamodule.eval_splits[dataloader_idx]

    def split_batches(self, split: str) -> Iterator[Mapping[str, Any]]:
        """Batches of one evaluation split, on this module's device (for scoring outside the loops)."""
        for batch in self.datamodule.eval_dataloader(split):
            yield self.transfer_batch_to_device(batch, self.device, 0)

    def forget_batches(self) -> Iterator[Mapping[str, Any]] | None:
        """The forget split's evaluation batches on this device, for ``setup_model``; None without one."""
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if datamodule is None or "forget" not in getattr(datamodule, "eval_splits", ()):
            return None
        return self.split_batches("forget")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Batches come from CPU loaders: on a CPU device there is nothing to move, so skip Lightning's walk
        over the nested ``{"forget": ..., "retain": ...}`` mapping (about a millisecond a step)."""
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def evaluation_precision(self) -> contextlib.AbstractContextManager:
        """The Trainer's precision for an evaluation outside ``test_step`` (a curve's t loop, the probes, an
        evaluation during training). Lightning autocasts inside ``test_step`` only: under ``bf16-mixed`` a curve
        point scored in ``on_test_epoch_end`` would otherwise run in fp32 while the endpoints it joins ran in bf16."""
        trainer = self._trainer
        return contextlib.nullcontext() if trainer is None else trainer.precision_plugin.test_step_context()

    # -- setup --------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if isinstance(getattr(self._trainer, "accelerator", None), CPUAccelerator):
            threads.apply(sum(p.numel() for p in self.parameters()))  # the mcu command's choice (core.threads)
        if stage == "fit":  # Lightning >= 2.2 keeps the modes it finds; from_pretrained leaves models in eval mode
            self.train()
        compat = self.compat
        if self.suite is not None:
            self.suite.bind(self.tokenizer)
            self.suite.set_compat(compat)
        if self.lifecycle is not None:
            self.lifecycle.bind(self.tokenizer)
            self.lifecycle.set_compat(compat)

    # -- fit: the training loss's hooks (mcu_lightning.losses.base.UnlearningLoss), in Lightning's order ---------
    def reference_network(self) -> nn.Module | None:
        """The frozen reference network the loss's ``attach`` receives (None when there is none)."""
        references = self.reference_models()
        return references[0] if references else None

    def start_loss(self, forget_batches: Iterator[Mapping[str, Any]] | None = None) -> None:
        """``setup_model`` and ``attach`` of the training loss (``on_fit_start``; tests call it directly)."""
        if self.lifecycle is None:
            return
        for reference in self.reference_models():
            reference.to(self.device)
        trained = self.trained_network()
        self.lifecycle.setup_model(trained, forget_batches)
        self.lifecycle.attach(trained, self.reference_network())

    def on_fit_start(self) -> None:
        self.start_loss(self.forget_batches())

    def on_train_start(self) -> None:
        """Training forwards build no KV cache (Hugging Face decoders default to ``use_cache=True``); a run resumed
        from an epoch's last batch starts the next epoch as a new one (``start_epoch_after_last_batch_resume``).

        Subclasses that override this or :meth:`on_train_end` call ``super()``.
        """
        start_epoch_after_last_batch_resume(self.trainer)
        self._train_contexts = contextlib.ExitStack()
        self._train_contexts.enter_context(kv_cache_off(*self.forward_models()))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.lifecycle is not None:
            self.lifecycle.on_train_step(self.global_step)

    def on_after_backward(self) -> None:
        if self.lifecycle is not None:
            self.lifecycle.on_after_backward(self.trained_network())

    def on_train_end(self) -> None:
        contexts = self.__dict__.pop("_train_contexts", None)
        if contexts is not None:
            contexts.close()

    def forward_models(self) -> list[nn.Module]:
        """The networks a training step runs: the trained (or template) model and any frozen reference."""
        return [self.eval_model(), *self.reference_models()]

    def per_sample_loss(self, batch: Mapping[str, Any]) -> Tensor:
        """Mean answer NLL (or CE) per sample under the current model; curriculum scoring calls it."""
        return mean_nll(call_model(self.eval_model(), batch), batch["labels"])

    def log_step(self, loss: Tensor, parts: Mapping[str, Tensor], batch_size: int) -> None:
        """Log the step's loss (progress bar) and its named parts under ``train/``.

        Every step's values are kept in ``step_logs`` for callbacks that check each step (``DivergenceGuard``);
        they go through ``self.log`` only when something reads them (``step_logs.names_to_log``).
        """
        self.step_logs = {LOSS: loss.detach(), **{f"train/{k}": v for k, v in parts.items()}}
        for name in names_to_log(self._trainer, self.step_logs):
            self.log(name, self.step_logs[name], prog_bar=name == LOSS, batch_size=batch_size)

    # -- validation: losses per split --------------------------------------------------------------
    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        split = self.eval_split(dataloader_idx)
        loss = self.per_sample_loss(batch).mean()
        self.log(f"val/{split}_loss", loss, add_dataloader_idx=False, sync_dist=True, batch_size=len(batch["labels"]))

    # -- test: the metric suite, then the probes ------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        if self.suite is not None:
            self.suite.reset()
        self.test_batches: list[tuple[str, Mapping[str, Any]]] = []

    def test_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        split = self.eval_split(dataloader_idx)
        if self.suite is None:
            loss = self.per_sample_loss(batch).mean()
            self.log(f"test/{split}/loss", loss, add_dataloader_idx=False, sync_dist=True)
            return
        self.suite.update(self.eval_model(), split, batch)
        if self.probes:  # the probes evaluate again on the same batches
            self.test_batches.append((split, batch))

    def on_test_epoch_end(self) -> None:
        if self.suite is None:
            return
        result = self.suite.compute()
        if self.probes:
            with self.evaluation_precision():
                result.aggregates.update(run_probes(self.probes, self.eval_model(), self.probe_context(result)))
            self.test_batches = []
        self.last_test_result = result
        for name, value in result.aggregates.items():
            self.log(f"test/{name}", float(value), sync_dist=False, rank_zero_only=True)
        self._write_test_result(result)

    def probe_context(self, before: EvalResult) -> ProbeContext:
        """What the probes read at the current model: the suite, this test's batches, the suite's ``before``."""
        wanted = any(probe.needs_references for probe in self.probes)
        references = self.probe_references() if wanted else {}
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        return ProbeContext(self.suite, self.test_batches, before, datamodule, references)

    @rank_zero_only
    def _write_test_result(self, result: EvalResult) -> None:
        result.to_json(self.output_dir / TEST_METRICS)
        self.suite.export(result, self.output_dir)  # QA: open-unlearning's TOFU_EVAL.json and TOFU_SUMMARY.json

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        params = self.trainable_parameters()
        if not params:
            raise InputError(f"{type(self).__name__} has no trainable parameters; check `include`/LoRA settings")
        return optimization(
            params,
            optimizer=self.optimizer_factory,
            lr_scheduler=self.lr_scheduler,
            warmup_steps=self.warmup_steps,
            total_steps=lambda: int(self.trainer.estimated_stepping_batches),
        )
