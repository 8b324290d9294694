"""Stop a Trainer's loops at the next batch once a stop was requested (``core.termination``: a study's SIGTERM)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mcu_lightning.core.termination import stop_requested


class StopOnTermination(Callback):
    """Raise Lightning's ``SIGTERMException`` before the next batch once :func:`stop_requested`.

    Lightning stops on SIGTERM only when the signal comes while its connector holds it; a SIGTERM that came while
    the Trainer was set up (or between two Trainer calls of a stage) reaches the study's handler alone. Before a
    training batch the state on disk is the last checkpoint's, so the rerun resumes from it as after any stop.
    """

    def _check(self) -> None:
        if stop_requested():
            raise SIGTERMException

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._check()

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._check()

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._check()
