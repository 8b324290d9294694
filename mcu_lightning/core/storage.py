"""Files that cannot be written or read back, as one line naming the file and the fix.

A full disk (``ENOSPC``, ``EDQUOT``) or a read-only one (``EROFS``, and ``EACCES``/``EPERM`` on a file the package
writes) is the user's setup, not a bug: :func:`storage_error` turns the ``OSError`` into a :class:`StorageError`
(an :class:`~mcu_lightning.core.errors.InputError`, so ``mcu`` prints it as one ``error:`` line). Every writer goes
through :func:`~mcu_lightning.core.atomic.atomic_write`, which leaves the file whole or absent, and a stage records
itself complete only after its files are written, so the stage that failed runs again on the next run.
:func:`read_json` names a damaged JSON file instead of raising ``JSONDecodeError``, and :func:`read_utf8` the line of a
byte that is not UTF-8.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from mcu_lightning.core.errors import InputError

#: errno -> what the user can do about it.
FIXES = {
    errno.ENOSPC: "free space on that disk (or set output_dir to a folder on another one)",
    errno.EDQUOT: "free space within your disk quota (or set output_dir to a folder on another disk)",
    errno.EROFS: "the file system is read-only: set output_dir to a folder you can write (or remount it writable)",
    errno.EACCES: "the folder is not writable: set output_dir to a folder you can write (or fix its permissions)",
    errno.EPERM: "the folder is not writable: set output_dir to a folder you can write (or fix its permissions)",
}
RERUN = "then run the same command again (what was not finished runs again)"


class StorageError(InputError, OSError):
    """A file that could not be written because of where it goes (a full or read-only disk)."""

    def __str__(self) -> str:  # the message, not OSError's "[Errno 28] ..." form
        return str(self.args[0])


def storage_error(err: OSError, path: str | os.PathLike | None = None) -> StorageError | None:
    """The one-line error for ``err`` raised while writing ``path`` (default: the file ``err`` names), or ``None``
    when ``err`` is not about the disk (then it keeps its traceback)."""
    if isinstance(err, StorageError):
        return err
    fix = FIXES.get(err.errno) if isinstance(err, OSError) else None
    if fix is None:
        return None
    # shutil's copies name the destination as filename2 (filename is the source)
    target = path if path is not None else err.filename2 or err.filename
    reason = err.strerror or os.strerror(err.errno)
    error = StorageError(f"cannot write '{target}': {reason}; {fix}, {RERUN}")
    error.errno, error.strerror, error.filename = err.errno, err.strerror, str(target)
    return error


def read_utf8(path: str | os.PathLike, what: str = "file") -> str:
    """The text of ``path``; a byte that is not UTF-8 is one line naming the file, line and column (Python's own
    error names only a byte offset)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise InputError(
            f"{what} '{path}' line {line} column {column}: byte {raw[err.start]:#04x} is not UTF-8 ({err.reason}); "
            "save the file as UTF-8"
        ) from None


def read_json(path: str | os.PathLike) -> Any:
    """The JSON content of ``path``; a damaged file (cut off, not JSON, not UTF-8) is one line naming it."""
    path = Path(path)
    try:
        return json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}: {err.msg}"
        raise InputError(
            f"'{path}' is damaged ({where}); rerun `mcu experiment` with the study's config (a stage whose output "
            "changed runs again) or restore the file"
        ) from None
