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
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH

from mcu_lightning.atomic import atomic_write


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` into memory, then :func:`atomic_write` (a failing pickle never touches ``path``)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getvalue())


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic renames (remote paths keep Lightning's fsspec path)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        fs = get_filesystem(path)
        if "file" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(
                f"`Trainer.save_checkpoint(..., storage_options=...)` is not supported by {type(self).__name__}; "
                "drop storage_options for local checkpoints"
            )
        atomic_torch_save(checkpoint, path)
