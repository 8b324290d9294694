"""One stage of a study: its folder, its kind, the function that runs it, and what determines its result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGE_MARKER = "stage.json"
PARTIAL_MARKER = "stage.partial.json"


@dataclass
class Stage:
    """One unit of work: a directory, a kind, the function that runs it, and what determines its result.

    ``config`` is the stage's resolved config section and ``depends`` the stages whose outputs it reads; with
    the data they make its fingerprint (``stage_identity``): what its *fit* was made from. ``test_config`` (the
    evaluation: suite, t grid, probes) makes, with that fingerprint, its *test* fingerprint; ``retest`` reruns
    only the test on the fitted weights (``None``: the stage is all test, or cheap, and reruns whole).
    """

    name: str
    kind: str
    directory: Path
    run: Callable[[], dict[str, Any]]
    depends: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    data: Any = None
    test_config: dict[str, Any] = field(default_factory=dict)
    retest: Callable[[], dict[str, Any]] | None = None

    @property
    def marker(self) -> Path:
        return self.directory / STAGE_MARKER

    @property
    def partial_marker(self) -> Path:
        """Written when the stage starts: an interrupted stage resumes only under the same fingerprint."""
        return self.directory / PARTIAL_MARKER

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}'"
