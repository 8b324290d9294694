"""Files that are either whole or absent: write a temporary sibling, fsync, then rename over the target.

One helper for every writer of the package (metric JSON, curve reports, checkpoints), so an interrupted
write never leaves a truncated file that a later stage would load.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mcu_lightning.core.storage import storage_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``; returns the path.

    The destination holds either its previous content or all of ``data``, never a prefix: an exception (or a
    kill) before the rename leaves it untouched, and the temporary file is removed on exceptions. The file gets
    the usual ``0o666 & ~umask`` permissions (``mkstemp`` alone would leave it owner-only). A full or read-only
    disk raises :class:`~mcu_lightning.core.storage.StorageError` naming ``path`` and the fix.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # a read-only or full disk: one line naming the file (see core.storage)
        raise (storage_error(err, path) or err) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        disk = storage_error(err, path) if isinstance(err, OSError) else None
        if disk is not None:
            raise disk from err
        raise
    return path


def atomic_copy(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy ``source`` to ``path`` through :func:`atomic_write`: a full disk leaves no cut-off copy."""
    return atomic_write(path, Path(source).read_bytes())
