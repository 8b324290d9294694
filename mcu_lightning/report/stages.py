"""Which of a study's planned stages the report may show: each stage of the plan in ``study.json`` with its state.

The study layer (``mcu_lightning.study.status``) decides the state from the stage records, as ``mcu experiment``
does: ``complete`` (its ``stage.json`` matches the plan, its outputs and the outputs it read are hash-equal),
``missing`` (never ran), ``interrupted`` (started, not finished) or ``stale`` (made with other inputs, or an
output changed since). The report shows the complete ones only, and names the others in its first lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

COMPLETE = "complete"


@dataclass(frozen=True)
class StageState:
    """One planned stage: its name and kind, its folder relative to the study, its state and why."""

    name: str
    kind: str
    folder: str
    state: str = COMPLETE
    reason: str = ""

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE

    @property
    def line(self) -> str:
        return f"{self.kind} '{self.name}' {self.state}" + (f" ({self.reason})" if self.reason else "")


def current_folders(stages: Sequence[StageState] | None) -> set[str] | None:
    """The folders (relative, POSIX) of the complete stages; ``None``: no plan given, every folder counts."""
    if stages is None:
        return None
    return {stage.folder for stage in stages if stage.complete}


def shown(root: Path, folder: Path, allowed: set[str] | None) -> bool:
    """Whether the report shows the stage in ``folder`` (``allowed``: :func:`current_folders`)."""
    return allowed is None or folder.relative_to(root).as_posix() in allowed


def incomplete_lines(stages: Sequence[StageState] | None) -> list[str]:
    """The summary's first lines when stages of the plan are not complete (none when all are)."""
    missing = [stage for stage in stages or () if not stage.complete]
    if not missing:
        return []
    return [
        f"**Incomplete: {len(missing)} of {len(stages or ())} planned stages are missing or stale; their results are "
        "left out below.** Run `mcu experiment` with the study's config to complete them.",
        "",
        *(f"- {stage.line}" for stage in missing),
        "",
    ]
