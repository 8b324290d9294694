"""Silence what other libraries print that says nothing about this run (a study's console, ``mcu fit``/``test``).

:func:`quiet_third_party` drops Lightning's start-up INFO lines (device list, litlogger tips, seeds, "stopped:
max_epochs reached"; by message), the Hugging Face progress bars for tiny local files, and warnings we cannot fix
at their cause, each filtered by message and module. Warnings, errors and everything else still print;
``MCU_VERBOSE=1`` keeps all of it. Process-wide logging and warning filters, called once by the command-line entry
points, so they live at the bottom layer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

#: INFO lines (logger, message start) that describe the library, not the run; every other line still prints
#: (a resume's "Restored all states ...", any warning).
CHATTY_LINES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lightning.pytorch.utilities.rank_zero", ("GPU available", "TPU available", "HPU available", "💡 Tip")),
    ("lightning.pytorch.utilities.rank_zero", ("`Trainer.fit` stopped",)),  # the stage line says it finished
    ("lightning.fabric.utilities.seed", ("Seed set to",)),  # the study's YAML says the seed
)


class _DropLines(logging.Filter):
    """Drop the records of one logger whose message starts with one of ``starts``."""

    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


#: (message regex, module regex) of third-party warnings that no project code can prevent.
THIRD_PARTY_WARNINGS = (
    # Lightning 2.6's own pytree helper calls torch's deprecated LeafSpec (fixed upstream, not by a caller)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    # MCUModule overrides transfer_batch_to_device on purpose (a CPU batch is not walked); Lightning notes
    # that the module's hook wins over the datamodule's, which is what we want
    (r"You have overridden `transfer_batch_to_device` in `LightningModule`", r"lightning\.pytorch\.trainer"),
    # peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing` whenever it wraps a model (every
    # LoRA stage and LoRA-space curve); the property is theirs and so is the call
    (r"`is_gradient_checkpointing` is deprecated", r"transformers\.modeling_utils"),
)


def quiet_third_party() -> None:
    """Silence third-party chatter for a study's console (see the module docstring); ``MCU_VERBOSE=1``: keep it."""
    if os.environ.get("MCU_VERBOSE"):
        return
    for name, starts in CHATTY_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) and f.starts == starts for f in logger.filters):
            logger.addFilter(_DropLines(starts))
    for message, module in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    # LightningCLI 2.6 calls jsonargparse APIs that jsonargparse 4.49 deprecates (`mcu fit`/`test`; not our calls)
    with contextlib.suppress(ImportError):  # the class is not public; older jsonargparse has no such warnings
        from jsonargparse._deprecated import JsonargparseDeprecationWarning

        warnings.filterwarnings("ignore", category=JsonargparseDeprecationWarning, module=r"lightning\.pytorch\.cli")
    # "Generating train split", "Loading weights", "Writing model shards": bars over local files of a few KB
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
