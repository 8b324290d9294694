"""EvaluateDuringTraining: run the metric suite while unlearning and keep the best checkpoint by a score.

Every ``every_n_epochs`` epochs (or ``every_n_steps`` optimizer steps) the callback evaluates the module's eval model
with the module's suite (or ``suite``, a cheaper one) on the data module's evaluation splits (or ``splits``), at most
``limit_batches`` batches of each. The aggregates go to every logger as ``during/<name>`` at the global step
(TensorBoard scalars) and to ``<output_dir>/during_training.json``. The score is a weighted sum of aggregates,
``score = sum_k w_k * aggregate_k`` (``score: {forget_quality: 0.5, model_utility: 0.5}`` is their mean); the best
score so far (``mode: max`` or ``min``) saves ``<output_dir>/checkpoints/best.ckpt``. With ``select: best`` the
best weights are loaded back into the module at ``on_fit_end``, before it exports and tests, so the run's model is
the best one instead of the last.

Under DDP each process evaluates its shard of every split (a ``DistributedSampler`` without shuffling, as
Lightning's test loop does); the suite gathers and de-duplicates by sample index, so every process computes the
same aggregates as one process would, and so the same score and the same selected checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, DistributedSampler

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.names import CHECKPOINTS_DIR
from mcu_lightning.metrics.suite import EvalResult, MetricSuite

HISTORY_FILE = "during_training.json"
BEST_CHECKPOINT = "best.ckpt"
SELECT = ("last", "best")


class EvaluateDuringTraining(Callback):
    """Evaluate while training; keep the best checkpoint by ``score``.

    Args:
        score: aggregate name -> weight of the selection score (a weighted sum).
        mode: ``max`` (higher score is better) or ``min``.
        every_n_epochs: evaluate at the end of every n-th training epoch (``None``: not by epoch).
        every_n_steps: evaluate after every n-th optimizer step (``None``: not by step).
        suite: the suite to run (default: the module's ``suite``).
        splits: the evaluation splits to run (default: all the data module's).
        limit_batches: at most this many batches of each split (per process), for a cheap estimate.
        select: ``best`` loads the best weights into the module at the end of ``fit``; ``last`` keeps the last.
    """

    def __init__(
        self,
        score: dict[str, float],
        mode: str = "max",
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        suite: MetricSuite | None = None,
        splits: list[str] | None = None,
        limit_batches: int | None = None,
        select: str = "last",
    ) -> None:
        if not score:
            raise InputError("EvaluateDuringTraining needs a score, e.g. {forget_quality: 0.5, model_utility: 0.5}")
        if mode not in ("max", "min"):
            raise InputError(f"mode={mode!r}; use 'max' (higher score is better) or 'min'")
        if select not in SELECT:
            raise InputError(f"select={select!r}; use one of {SELECT}")
        for name, every in (("every_n_epochs", every_n_epochs), ("every_n_steps", every_n_steps)):
            if every is not None and every < 1:
                raise InputError(f"{name}={every}; give a positive number or null")
        if every_n_epochs is None and every_n_steps is None:
            raise InputError("EvaluateDuringTraining never runs: set every_n_epochs or every_n_steps")
        self.score_weights = {str(k): float(v) for k, v in score.items()}
        self.mode = mode
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.suite = suite
        self.splits = splits
        self.limit_batches = limit_batches
        self.select = select
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._best_weights: dict[str, torch.Tensor] | None = None
        self._last_step = -1

    # -- when -------------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps is not None and step != self._last_step and step % self.every_n_steps == 0:
            self._last_step = step
            self.evaluate(trainer, pl_module)

    # -- what ---------------------------------------------------------------------------------------
    def score(self, aggregates: Mapping[str, float]) -> float:
        """``sum_k w_k * aggregates[k]``; NaN when a component is NaN (such an evaluation is never the best)."""
        missing = [name for name in self.score_weights if name not in aggregates]
        if missing:
            raise InputError(
                f"the selection score needs {missing}, which the suite did not report; it reports: "
                f"{sorted(aggregates)} (forget_quality also needs suite.oracle)"
            )
        return sum(weight * float(aggregates[name]) for name, weight in self.score_weights.items())

    def _loaders(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, DataLoader]:
        datamodule = trainer.datamodule
        splits = self.splits if self.splits is not None else list(datamodule.eval_splits)
        loaders = {}
        for split in splits:
            loader = datamodule.eval_dataloader(split)
            if trainer.world_size > 1:
                sampler = DistributedSampler(
                    loader.dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
                )
                loader = DataLoader(
                    loader.dataset, batch_size=loader.batch_size, sampler=sampler, collate_fn=loader.collate_fn
                )
            loaders[split] = loader
        return loaders

    @torch.no_grad()
    def run_suite(self, trainer: Trainer, pl_module: LightningModule) -> EvalResult:
        suite = self.suite if self.suite is not None else getattr(pl_module, "suite", None)
        if suite is None:
            raise InputError("EvaluateDuringTraining needs a suite: give the module a suite or the callback one")
        if suite is not getattr(pl_module, "suite", None):
            suite.to(pl_module.device)
            suite.bind(getattr(pl_module, "tokenizer", None))
            suite.set_compat(getattr(pl_module, "compat", None))
        model = pl_module.eval_model()
        was_training = model.training
        model.eval()
        suite.reset()
        try:
            # the Trainer's precision, as a test_step has it (Lightning autocasts only inside the step methods)
            with trainer.precision_plugin.test_step_context():
                for split, loader in self._loaders(trainer, pl_module).items():
                    for i, batch in enumerate(loader):
                        if self.limit_batches is not None and i >= self.limit_batches:
                            break
                        suite.update(model, split, pl_module.transfer_batch_to_device(batch, pl_module.device, 0))
                return suite.compute()
        finally:
            suite.reset()
            model.train(was_training)

    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        result = self.run_suite(trainer, pl_module)
        value = self.score(result.aggregates)
        entry = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "score": value,
            "aggregates": result.aggregates,
        }
        self.history.append(entry)
        metrics = {f"during/{name}": float(v) for name, v in result.aggregates.items() if math.isfinite(v)}
        if math.isfinite(value):
            metrics["during/score"] = value
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        if self._improves(value):
            self.best = entry
            self._best_weights = {
                name: p.detach().to("cpu", copy=True) for name, p in pl_module.named_parameters() if p.requires_grad
            }
            path = self.checkpoint_path(pl_module)
            trainer.save_checkpoint(path)  # every rank calls it; rank 0 writes
        self._write(trainer, pl_module)
        return entry

    def _improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best["score"] if self.mode == "max" else value < self.best["score"]

    # -- where ----------------------------------------------------------------------------------------
    @staticmethod
    def output_dir(pl_module: LightningModule) -> Path:
        return Path(getattr(pl_module, "output_dir", None) or pl_module.trainer.default_root_dir)

    def checkpoint_path(self, pl_module: LightningModule) -> Path:
        return self.output_dir(pl_module) / CHECKPOINTS_DIR / BEST_CHECKPOINT

    def _write(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        payload = {"score": self.score_weights, "mode": self.mode, "best": self.best, "history": self.history}
        text = json.dumps(payload, indent=1, default=float, allow_nan=True)
        atomic_write(self.output_dir(pl_module) / HISTORY_FILE, text.encode())

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """With ``select: best``, the module leaves ``fit`` with the best weights (before it exports)."""
        if self.select != "best" or self.best is None:
            return
        weights = self._best_weights
        if weights is None:  # resumed from a checkpoint: the best weights are in best.ckpt
            state = torch.load(self.checkpoint_path(pl_module), map_location="cpu", weights_only=False)["state_dict"]
            pl_module.load_state_dict(state)
            return
        named = dict(pl_module.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                named[name].copy_(value.to(named[name].device))

    # -- resume -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best": self.best, "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.best = state_dict.get("best")
        self._last_step = state_dict.get("last_step", -1)
