"""Checkpoints that are either whole or absent: write to a temporary file beside the target, fsync, rename.

Lightning 2.6 saves through ``lightning.fabric.utilities.cloud_io._atomic_save``: ``torch.save`` into memory,
then an fsspec ``transaction``. On the local filesystem fsspec writes the bytes to ``tempfile.mkstemp()``
(the system temporary folder, not the checkpoint's) and commits with ``shutil.move``. When that folder is on
another device (``/tmp`` on tmpfs, checkpoints on a disk or a network mount), ``shutil.move`` falls back to
copy-then-delete, so a process killed during the copy leaves a truncated ``last.ckpt`` that the next resume
reads; nothing is fsynced either. ``AtomicCheckpointIO`` keeps the temporary file in the target folder, so
the final ``os.replace`` is one atomic rename on every POSIX filesystem.

    trainer = Trainer(plugins=[AtomicCheckpointIO()])      # or trainer.plugins in a LightningCLI YAML
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.errors import InputError


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` into memory, then :func:`atomic_write` (a failing pickle never touches ``path``)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getvalue())


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic renames (remote paths keep Lightning's fsspec path)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if "file" not in _protocols(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(
                f"`Trainer.save_checkpoint(..., storage_options=...)` is not supported by {type(self).__name__}; "
                "drop storage_options for local checkpoints"
            )
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: _PATH, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Lightning's load, after :func:`check_checkpoint` on local files: a damaged file is one clear error."""
        if "file" in _protocols(path):
            check_checkpoint(path)
        return super().load_checkpoint(path, *args, **kwargs)


def _protocols(path: _PATH) -> tuple[str, ...]:
    protocol = get_filesystem(path).protocol
    return protocol if isinstance(protocol, tuple) else (protocol,)


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from (``None`` if it can be opened).

    ``torch.save`` writes a zip archive whose central directory sits at its end, so a truncated file (a copy cut
    short, a full disk) is caught by opening the archive, without reading the tensors; the pickled record must
    be there too.
    """
    path = Path(path)
    if not path.is_file():
        return "no such file"
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return "not a torch checkpoint (no data.pkl in the archive)"
    except (zipfile.BadZipFile, OSError) as err:
        return f"truncated or not a checkpoint: {err}"
    return None


class CheckpointError(InputError):
    """A checkpoint to resume from that cannot be read, or that belongs to another run."""


def check_checkpoint(path: str | os.PathLike) -> None:
    """Raise ``CheckpointError`` (one line: the file, the problem, the fix) when ``path`` cannot be resumed from."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; pass the path of a .ckpt file")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(
            f"checkpoint '{path}' cannot be resumed from ({problem}); delete it to start over, "
            "or pass --ckpt_path with an intact checkpoint"
        )


def start_epoch_after_last_batch_resume(trainer: Any) -> bool:
    """Make a run resumed from a checkpoint of an epoch's last batch start the next epoch as a new epoch.

    Lightning 2.6 restores such a checkpoint (saved in ``on_train_batch_end`` of the epoch's last batch, as a
    ``ModelCheckpoint(every_n_train_steps=...)`` does whenever the interval divides the epoch) as "restarted mid
    epoch" and marks the finished epoch processed and completed, but then keeps the "mid epoch" stage for the next
    epoch's start: that epoch is never counted ready or started and its ``on_train_epoch_start`` hooks do not run.
    Its checkpoints then look like finished epochs, and a second resume inside that epoch restarts it from its
    first batch (the run ends with extra steps and other weights). Called from ``on_train_start`` (after the loops
    restored their state, before the first epoch starts), this clears that stage so the next epoch starts as in an
    uninterrupted run. Returns whether it did. Tested by ``tests/reliability/test_resume.py`` (kill at an epoch end,
    then mid-epoch).
    """
    fit_loop = trainer.fit_loop
    epoch_loop = fit_loop.epoch_loop
    if not (fit_loop.restarted_mid_epoch and epoch_loop.batch_progress.is_last_batch):
        return False
    progress = fit_loop.epoch_progress.current
    if not progress.ready == progress.started == progress.processed == progress.completed:
        return False  # Lightning did not close the epoch: nothing to correct
    fit_loop.reset_restart_stage()
    return True
