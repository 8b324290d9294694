"""Files that are either whole or absent: write a temporary sibling, fsync, then rename over the target.

One helper for every writer of the package (metric JSON, curve reports, checkpoints), so an interrupted
write never leaves a truncated file that a later stage would load.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``; returns the path.

    The destination holds either its previous content or all of ``data``, never a prefix: an exception (or a
    kill) before the rename leaves it untouched, and the temporary file is removed on exceptions. The file gets
    the usual ``0o666 & ~umask`` permissions (``mkstemp`` alone would leave it owner-only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
