"""Which of a training step's values go through ``self.log``: only what something reads on that step.

Each ``self.log`` call costs about 1 ms of Python in Lightning 2.x (it moves its result object to the value's
device), as much as a tiny model's forward; so a step logs all its values on the steps the Trainer's loggers write
(``log_every_n_steps``), the loss alone on other steps while a progress bar shows it, and nothing otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: The step's loss: the one value a progress bar shows.
LOSS = "train/loss"


def loggers_write_this_step(trainer: Any) -> bool:
    """Whether the Trainer's loggers write what is logged in the current training step: every ``log_every_n_steps``-th
    step and the step the run stops on (never with ``log_every_n_steps=0``); True without a Trainer.

    Lightning answers this only privately, in ``trainer._logger_connector.should_update_logs`` (its public parts,
    ``log_every_n_steps`` and ``global_step``, do not give it: the step it counts is the fit loop's private
    ``_batches_that_stepped``, which also counts a step whose loss was skipped). This is the package's one read of it;
    checked against Lightning 2.6.6. A Trainer without the attribute logs every value, correct and only slower.
    """
    connector = getattr(trainer, "_logger_connector", None)
    return connector is None or connector.should_update_logs


def names_to_log(trainer: Any, names: Iterable[str]) -> list[str]:
    """Of a step's value names, those to pass to ``self.log`` now (see the module docstring)."""
    if loggers_write_this_step(trainer):
        return list(names)
    bar = trainer.progress_bar_callback
    return [LOSS] if bar is not None and bar.is_enabled else []
