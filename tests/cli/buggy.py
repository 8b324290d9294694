"""Test-only losses for the CLI's error handling: one whose constructor has a bug (a KeyError of its own), one that
refuses its input the way the package's classes do (``InputError``)."""

from __future__ import annotations

from mcu_lightning.core.errors import InputError
from mcu_lightning.losses import GradDiff


class BuggyLoss(GradDiff):
    def __init__(self) -> None:
        super().__init__()
        settings: dict[str, int] = {}
        self.layers = settings["num_layers"]  # the bug: a key nobody set


class RefusingLoss(GradDiff):
    def __init__(self, margin: float = -1.0) -> None:
        if margin < 0:
            raise InputError(f"RefusingLoss: margin={margin} must be 0 or more")
        super().__init__()
