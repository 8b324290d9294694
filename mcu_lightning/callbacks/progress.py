"""Lightning's progress display for a study and for ``mcu fit``/``test``.

- :class:`StudyProgressBar`: Lightning's rich bar, counting a step-bounded fit in steps of ``max_steps``
  (``step 12/60``, not ``Epoch 29/-2``), epochs from 1, a curve's test by point (t i of N, with ETA), and a
  study row with the stage, the study's elapsed time and an estimate of what is left.
- :class:`LogEveryNStepsFromLoader`: ``log_every_n_steps`` no larger than an epoch's batches.

:class:`StudyProgressBar` overrides and calls private members of Lightning's ``RichProgressBar`` (``_init_progress``,
``_get_train_description``, ``_add_task``, ``_update``, ``_update_metrics``), so ``pyproject.toml`` caps
``lightning`` at the minor these were checked against.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import CustomTimeColumn, ProcessingSpeedColumn
from rich.text import Text

from mcu_lightning.core.clock import StudyClock, clock_text


class LogEveryNStepsFromLoader(Callback):
    """Lower ``log_every_n_steps`` to the batches of one epoch when an epoch is shorter.

    Lightning warns that the logging interval exceeds the epoch otherwise; the interval counts across epochs,
    so nothing was lost, but a short-epoch run then logs rarely. Reads the train loader's length after the
    datamodule's ``setup`` (callbacks' ``setup`` runs after it, before the fit loop sizes its data).
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.datamodule is None:
            return
        try:
            batches = len(trainer.datamodule.train_dataloader())
        except TypeError:  # an iterable without a length: nothing to compare
            return
        if 0 < batches < trainer.log_every_n_steps:
            trainer.log_every_n_steps = batches


class _TimeColumn(CustomTimeColumn):
    """Lightning's ``elapsed • remaining`` column; the study row shows the study's times instead of its own."""

    def render(self, task: Any) -> Text:
        clock = task.fields.get("study")
        if clock is None:
            return super().render(task)
        return Text(f"{clock_text(clock.elapsed())} • ~{clock_text(clock.remaining())}", style=self.style)


class _SpeedColumn(ProcessingSpeedColumn):
    """Lightning's ``it/s`` column, blank on the study row (stages per second says nothing)."""

    def render(self, task: Any) -> Text:
        return Text("") if "study" in task.fields else super().render(task)


class StudyProgressBar(RichProgressBar):
    """Lightning's rich progress bar, saying where a study's run is (see the module docstring).

    Args:
        clock: the study's clock; with one, every display also has a row for the study's stage and times.
    """

    def __init__(self, clock: StudyClock | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("leave", False)
        super().__init__(**kwargs)
        self.clock = clock
        self._points_id: Any = None
        self._batches_id: Any = None
        self._study_id: Any = None

    def configure_columns(self, trainer: Trainer) -> list:
        replace = {CustomTimeColumn: _TimeColumn(style=self.theme.time)}
        replace[ProcessingSpeedColumn] = _SpeedColumn(style=self.theme.processing_speed)
        return [replace.get(type(column), column) for column in super().configure_columns(trainer)]

    def _init_progress(self, trainer: Trainer) -> None:
        fresh = self.is_enabled and (self.progress is None or self._progress_stopped)
        super()._init_progress(trainer)
        if fresh:
            self._points_id = None
            self._batches_id = None
            self._study_id = None
            if self.clock is not None and self.progress is not None:
                clock = self.clock
                self._study_id = self.progress.add_task(
                    clock.label, total=clock.total, completed=clock.index - 1, study=clock
                )

    # -- training: steps when max_steps bounds the fit ---------------------------------------------------
    def _step_bounded(self) -> bool:
        trainer = self.trainer
        return trainer.max_steps > 0 and (trainer.max_epochs is None or trainer.max_epochs < 0)

    def _get_train_description(self, current_epoch: int) -> str:
        if self._step_bounded():
            return "step"
        max_epochs = self.trainer.max_epochs
        return f"epoch {current_epoch + 1}" + (f"/{max_epochs}" if max_epochs and max_epochs > 0 else "")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._step_bounded():
            super().on_train_epoch_start(trainer, pl_module)
            return
        if self.is_disabled or self.progress is None:
            return
        if self.train_progress_bar_id is None:  # one bar for the whole fit, in steps
            self.train_progress_bar_id = self._add_task(trainer.max_steps, "step")
            self._update(self.train_progress_bar_id, trainer.global_step)
        self.refresh()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._step_bounded():
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        if not self.is_disabled and self.train_progress_bar_id is None:
            self.train_progress_bar_id = self._add_task(trainer.max_steps, "step")
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    # -- a curve's test: one bar over the points t ---------------------------------------------------------
    def on_curve_point(self, trainer: Trainer, pl_module: LightningModule, done: int, total: int, t: float) -> None:
        """Called by ``CurveModule`` before its first point (``done=0``) and after each one."""
        if self.is_disabled or self.progress is None:
            return
        description = f"t={t:.2f}" if done < total else "curve points"
        if self._points_id is None:
            self._points_id = self.progress.add_task(description, total=total)
        self.progress.update(self._points_id, completed=done, description=description)
        self.refresh()

    def on_curve_batch(self, trainer: Trainer, pl_module: LightningModule, done: int, total: int) -> None:
        """Called by ``CurveModule`` as the suite works through one point's batches (the generation counts as one)."""
        if self.is_disabled or self.progress is None:
            return
        if self._batches_id is None:
            self._batches_id = self.progress.add_task("batches of the point", total=total)
        self.progress.update(self._batches_id, completed=done, total=total)
        self.refresh()
