"""One writer per study folder: ``mcu experiment`` holds ``<run>/study.lock`` for its whole run.

The lock is an OS file lock (``filelock.FileLock``: ``flock`` on POSIX), so it is released when its process
dies, however it dies. Who holds it is written beside it (``study.lock.json``: pid, host, start time), since a
lock file's own content is truncated by every process that tries it. A holder file left by a process that died
means a stale lock: the next study takes it over and says so.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from mcu_lightning.core.atomic import atomic_write

LOCK_FILE = "study.lock"
HOLDER_FILE = "study.lock.json"


class StudyLocked(RuntimeError):
    """Another process holds the study folder's lock."""


def _holder_text(holder: dict | None) -> str:
    if not holder:
        return "an unknown process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {started}"


class StudyLock:
    """``with StudyLock(folder):`` the only ``mcu experiment`` writing ``folder``; raises ``StudyLocked`` at once."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.lock = FileLock(str(self.folder / LOCK_FILE), timeout=0)
        self.holder_path = self.folder / HOLDER_FILE

    def holder(self) -> dict | None:
        try:
            return json.loads(self.holder_path.read_text())
        except (OSError, ValueError):
            return None

    def __enter__(self) -> StudyLock:
        try:
            self.lock.acquire()
        except Timeout:
            raise StudyLocked(
                f"another `mcu experiment` is running on '{self.folder}' ({_holder_text(self.holder())}); "
                "wait for it to finish, or give this study another output_dir"
            ) from None
        stale = self.holder()
        if stale is not None:
            warnings.warn(
                f"took over the lock of '{self.folder}' from a study that did not finish ({_holder_text(stale)})",
                stacklevel=2,
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        atomic_write(self.holder_path, json.dumps(me).encode())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.holder_path.unlink(missing_ok=True)
        self.lock.release()
