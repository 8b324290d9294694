"""SIGTERM during a study: stop at the next safe point, mark nothing complete that is not, exit 143.

A cluster scheduler (SLURM before its SIGKILL, ``scancel``) sends SIGTERM. Inside a Trainer call Lightning's
``_SignalConnector`` owns the signal: it sets ``trainer.received_sigterm`` and its loops raise
``SIGTERMException`` after the current batch (the curve test checks it after every batch and point). That
exception is a ``SystemExit`` *without a code*, so left alone the process exits 0 and the scheduler reads the
study as a success. :class:`TerminationWatch` holds SIGTERM for the whole study: between Trainer calls it stops
at once; inside one (``with watch.trainer_call():``) it only sets ``core.termination``'s flag and lets
Lightning stop the loop (``StopOnTermination`` and the curve test also read the flag, for a signal that came
while the Trainer was set up). Either way the study ends with :class:`StudyTerminated`: exit status 143
(128 + SIGTERM, what a shell reports for a process the signal ended), no ``stage.json`` for the interrupted
stage and no report. Lightning's own requeue (SLURM ``auto_requeue``) answers SIGUSR1, not SIGTERM, and is
left as it is. A rerun resumes the interrupted stage from its ``last.ckpt``, as after any kill.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType, TracebackType

from mcu_lightning.core.termination import clear_stop, request_stop, stop_requested

#: 128 + SIGTERM: the status a shell gives a process that SIGTERM ended.
EXIT_SIGTERM = 128 + signal.SIGTERM


class StudyTerminated(SystemExit):
    """Exit status 143 after one line on stderr saying where the study stopped and how to resume it."""

    def __init__(self, where: str) -> None:
        print(
            f"stopped by SIGTERM {where}: the interrupted stage is not marked complete and no report was written; "
            "run the same command again to resume it from its last checkpoint",
            file=sys.stderr,
        )
        super().__init__(EXIT_SIGTERM)


class TerminationWatch:
    """``with TerminationWatch() as watch:`` SIGTERM raises :class:`StudyTerminated` outside a Trainer call; inside
    ``with watch.trainer_call():`` it only requests the stop, which the loops honour at the next batch (raising
    there, in the middle of Lightning's setup or teardown, would end in Lightning's own cleanup errors)."""

    def __init__(self) -> None:
        self._previous: object = None
        self._in_trainer = False
        self.where = "between stages"  # the runner sets "during <stage>" while one runs

    @property
    def received(self) -> bool:
        return stop_requested()

    def __enter__(self) -> TerminationWatch:
        clear_stop()
        self._previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        signal.signal(signal.SIGTERM, self._previous)  # type: ignore[arg-type]
        clear_stop()

    @contextlib.contextmanager
    def trainer_call(self) -> Iterator[None]:
        """While a Trainer runs: SIGTERM only requests the stop (Lightning's connector also calls this handler)."""
        self._in_trainer = True
        try:
            yield
        finally:
            self._in_trainer = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        request_stop()
        if not self._in_trainer:
            raise StudyTerminated(self.where)

    def check(self, where: str) -> None:
        """Raise :class:`StudyTerminated` if SIGTERM came (e.g. on a Trainer's last batch, which Lightning lets end)."""
        if self.received:
            raise StudyTerminated(where)
