"""Where a study is: the stage running, how many there are, the seconds the finished ones took, an estimate of
what is left. The study runner starts and stops it; the progress bar's study row reads it
(:class:`~mcu_lightning.callbacks.progress.StudyProgressBar`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta


@dataclass
class StudyClock:
    """Where a study is: the stage running, how many there are, and the seconds the finished ones took."""

    total: int
    started: float = field(default_factory=time.monotonic)
    index: int = 0
    label: str = ""
    stage_started: float = field(default_factory=time.monotonic)
    durations: list[float] = field(default_factory=list)

    def start(self, index: int, label: str) -> None:
        self.index, self.label, self.stage_started = index, label, time.monotonic()

    def finish(self) -> float:
        seconds = time.monotonic() - self.stage_started
        self.durations.append(seconds)
        return seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float | None:
        """Seconds left: the mean duration of the stages run so far for each stage not finished, less the time
        the current one has run; ``None`` before any stage finished."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        left = self.total - self.index + 1  # this stage and those after it
        return max(0.0, mean * left - (time.monotonic() - self.stage_started))


def clock_text(seconds: float | None) -> str:
    return "-:--:--" if seconds is None else str(timedelta(seconds=int(seconds)))
