"""What every stage function reads of its study: the study, its folders, and how it builds and runs a stage.

A :class:`StageContext` is made once per study by :class:`~mcu_lightning.study.runner.StudyRunner`, which plans the
stages and runs them; each kind of stage is one function taking the context (:mod:`mcu_lightning.study.stages`,
:mod:`mcu_lightning.study.uses`). The context builds what a stage's config names (its data module, metric suite,
probes, Trainer), fits and tests, and reports on the study's console.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.names import (
    CHECKPOINTS_DIR,
    CURVES_DIR,
    ENDPOINTS_DIR,
    LAST_CHECKPOINT,
    MERGES_DIR,
    MODEL_DIR,
    TEST_METRICS,
)
from mcu_lightning.study.build import build
from mcu_lightning.study.schema import BUILTIN_NODES, CurveSpec, Merge, Study, Training
from mcu_lightning.study.signals import TerminationWatch


@dataclass
class StageContext:
    """The study a stage belongs to, its folders (``runs/<name>/...``), and the building blocks of every stage.

    ``console``: a ``rich`` console for the study's lines (``None``: silent); ``clock`` (a
    ``core.clock.StudyClock``, the progress bars' study row) and ``watch`` (SIGTERM stops the study) are set by
    the runner while it runs.
    """

    study: Study
    root: Path
    console: Any = None
    clock: Any = None
    watch: TerminationWatch | None = None

    # folders
    def node_dir(self, node: str) -> Path:
        """``base/``, ``oracle/`` or ``endpoints/<name>/``."""
        if node in BUILTIN_NODES:
            return self.root / node
        return self.root / ENDPOINTS_DIR / node

    def model_path(self, node: str) -> str:
        """The model a node's stage tests and later stages read: a given ``path``, or the folder its fit exported."""
        stage = self.study.base if node == "base" else self.study.oracle if node == "oracle" else None
        if stage is not None and stage.path is not None:
            return stage.path
        return str(self.node_dir(node) / MODEL_DIR)

    def oracle_metrics(self) -> str:
        """The oracle's test JSON (per-sample truth ratios, MIA scores): forget quality and privleak need it."""
        return str(self.node_dir("oracle") / TEST_METRICS)

    def curve_dir(self, curve: CurveSpec) -> Path:
        return self.root / CURVES_DIR / curve.name

    def use_dir(self, curve: CurveSpec, use: str) -> Path:
        """``curves/<curve>/<use>``: ``ensemble-<name>``, ``plane`` or ``best-<metric>``."""
        return self.curve_dir(curve) / use

    def merge_dir(self, merge: Merge) -> Path:
        return self.root / MERGES_DIR / merge.name

    # building blocks
    def datamodule(self, overrides: dict[str, Any] | None = None, batch_size: int | None = None) -> Any:
        """The study's data module, with a stage's ``init_args`` overrides and batch size."""
        from lightning.pytorch import LightningDataModule

        spec = copy.deepcopy(self.study.data)
        spec.setdefault("init_args", {})
        spec["init_args"].update(overrides or {})
        if batch_size is not None:
            spec["init_args"]["batch_size"] = batch_size
        return build(spec, LightningDataModule, "data")

    def suite(self, with_oracle: bool) -> Any:
        """The study's metric suite, reading the oracle's test file (``with_oracle``) or comparing a model with
        itself (the oracle's own stage)."""
        from mcu_lightning.metrics.suite import MetricSuite

        spec = copy.deepcopy(self.study.evaluation.suite)
        # the oracle stage compares the oracle with itself instead of warning that it has no oracle
        spec.setdefault("init_args", {})["oracle"] = self.oracle_metrics() if with_oracle else "self"
        reference = spec["init_args"].get("reference_model")
        if reference in BUILTIN_NODES:  # the reference attack's model: the oracle's or the base's
            if reference == "base" and self.study.base.path is None:
                raise InputError(
                    "evaluation.suite reference_model: base needs base.path (an existing model): the oracle is tested "
                    "before the study trains the base; use reference_model: oracle, or a model folder"
                )
            spec["init_args"]["reference_model"] = self.model_path(reference)
        return build(spec, MetricSuite, "evaluation.suite")

    def probes(self) -> list[Any]:
        from mcu_lightning.probes import Probe

        return [build(spec, Probe, f"evaluation.probes[{i}]") for i, spec in enumerate(self.study.evaluation.probes)]

    def trainer(self, directory: Path, training: Training, extra_callbacks: Sequence[Any] = ()) -> Any:
        """A stage's Trainer: the study's ``trainer`` settings, the stage's length, checkpoints under ``directory``."""
        from lightning.pytorch import Trainer
        from lightning.pytorch.callbacks import ModelCheckpoint
        from lightning.pytorch.loggers import TensorBoardLogger

        kwargs = {"accelerator": "auto", "devices": 1, "enable_model_summary": False, "num_sanity_val_steps": 0}
        kwargs.update(self.study.trainer)
        kwargs.update(max_epochs=training.max_epochs, max_steps=training.max_steps)
        if training.max_epochs is None and training.max_steps == -1:
            kwargs["max_epochs"] = 1
        from mcu_lightning.callbacks.checkpoint import AtomicCheckpointIO

        every = self.study.checkpoint_every_n_steps  # mid-epoch checkpoints: a killed stage resumes where it was
        callbacks = [
            ModelCheckpoint(
                dirpath=directory / CHECKPOINTS_DIR, save_last=True, save_top_k=0, every_n_train_steps=every
            )
        ]
        kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        from mcu_lightning.callbacks.progress import LogEveryNStepsFromLoader, StudyProgressBar

        callbacks.append(LogEveryNStepsFromLoader())
        if self.study.progress:
            callbacks.append(StudyProgressBar(self.clock))
        kwargs["enable_progress_bar"] = self.study.progress
        kwargs.setdefault("limit_val_batches", 0)
        from mcu_lightning.callbacks.termination import StopOnTermination

        callbacks.append(StopOnTermination())  # a SIGTERM that came while the Trainer was set up
        return Trainer(
            default_root_dir=str(directory),
            logger=TensorBoardLogger(save_dir=str(directory), name="", version=""),
            callbacks=[*callbacks, *extra_callbacks],
            **kwargs,
        )

    def trainer_call(self) -> Any:
        """Around a Trainer call: a SIGTERM then stops the loop at its next batch instead of where it lands."""
        return self.watch.trainer_call() if self.watch is not None else contextlib.nullcontext()

    def fit_and_test(
        self,
        directory: Path,
        module: Any,
        datamodule: Any,
        training: Training,
        extra_callbacks: Sequence[Any] = (),
        final_checkpoint: bool = False,
    ) -> dict[str, Any]:
        """Fit ``module`` (resuming from ``checkpoints/last.ckpt``), then test it; the seconds each took."""
        directory.mkdir(parents=True, exist_ok=True)
        last = directory / CHECKPOINTS_DIR / LAST_CHECKPOINT
        if last.is_file():
            from mcu_lightning.callbacks.checkpoint import checkpoint_problem

            problem = checkpoint_problem(last)
            if problem is not None:  # restart the stage instead of failing on every rerun; keep the file to look at
                last.replace(last.with_name(last.name + ".damaged"))
                self.warn(f"{last} cannot be read ({problem}); moved to {last.name}.damaged, the stage starts over")
        trainer = self.trainer(directory, training, extra_callbacks)
        started = time.perf_counter()
        with self.trainer_call():
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.is_file() else None)
        if self.watch is not None:  # SIGTERM on the last batch: Lightning lets the fit end; test nothing then
            self.watch.check(self.watch.where)
        if final_checkpoint:  # what later stages read back: the weights at the end of the fit, whatever the cadence
            trainer.save_checkpoint(last, weights_only=False)  # the full state, as ModelCheckpoint writes it
        fit_s = time.perf_counter() - started
        test_datamodule = self.datamodule() if getattr(datamodule, "finetune_split", None) else datamodule
        with self.trainer_call():
            trainer.test(module, datamodule=test_datamodule, verbose=False)
        return {"fit_seconds": fit_s, "test_seconds": time.perf_counter() - started - fit_s}

    def test_only(
        self, directory: Path, module: Any, ckpt_path: Path | None = None, datamodule: Any = None
    ) -> dict[str, Any]:
        """The test alone; ``datamodule`` as the stage's fit built it (default: the study's data as given)."""
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        trainer = self.trainer(directory, Training())
        path = str(ckpt_path) if ckpt_path is not None else None
        datamodule = datamodule if datamodule is not None else self.datamodule()
        with self.trainer_call():
            trainer.test(module, datamodule=datamodule, verbose=False, ckpt_path=path)
        return {"test_seconds": time.perf_counter() - started}

    # the study's console
    def say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)

    def warn(self, message: str) -> None:
        if self.console is not None:
            self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
