"""Pacing functions: the share of the (sorted) forget set a curriculum shows at each epoch.

They follow curriculum learning with a pacing schedule (Hacohen & Weinshall, 2019, "On The Power of Curriculum
Learning in Training Deep Networks") and competence-based curricula (Platanios et al., 2019, "Competence-based
Curriculum Learning for Neural Machine Translation"): the fraction of the (sorted) data visible at epoch e grows
from ``start_fraction`` s to 1 at ``full_at_epoch`` E. ``Pacing`` is the plug point (YAML ``class_path:``).
"""

from __future__ import annotations

import math

from mcu_lightning.core.errors import InputError


class Pacing:
    """Base class: ``fraction(epoch)`` in (0, 1], the share of the ordered data visible at ``epoch`` (0-based)."""

    def __init__(self, start_fraction: float = 0.2, full_at_epoch: int = 5) -> None:
        if not 0 < start_fraction <= 1:
            raise InputError(f"start_fraction={start_fraction} must lie in (0, 1]")
        if full_at_epoch < 1:
            raise InputError(f"full_at_epoch={full_at_epoch} must be at least 1")
        self.start_fraction = start_fraction
        self.full_at_epoch = full_at_epoch

    def fraction(self, epoch: int) -> float:
        if epoch >= self.full_at_epoch:
            return 1.0
        return min(1.0, max(self.start_fraction, self._fraction(max(epoch, 0) / self.full_at_epoch)))

    def _fraction(self, progress: float) -> float:
        """The schedule at ``progress = e / E`` in [0, 1)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(start_fraction={self.start_fraction}, full_at_epoch={self.full_at_epoch})"


class LinearPacing(Pacing):
    """Linear pacing (Platanios et al., 2019): ``min(1, s + (1 - s) e / E)``."""

    def _fraction(self, progress: float) -> float:
        s = self.start_fraction
        return s + (1 - s) * progress


class RootPacing(Pacing):
    """Square-root competence (Platanios et al., 2019): ``min(1, sqrt(s^2 + (1 - s^2) e / E))``."""

    def _fraction(self, progress: float) -> float:
        s = self.start_fraction
        return math.sqrt(s * s + (1 - s * s) * progress)


class StepPacing(Pacing):
    """Step pacing (Hacohen & Weinshall, 2019): ``s + (1 - s) floor(n e / E) / n``.

    The pool grows in ``num_steps`` equal jumps; it is full at ``E``.
    """

    def __init__(self, start_fraction: float = 0.2, full_at_epoch: int = 5, num_steps: int | None = None) -> None:
        super().__init__(start_fraction=start_fraction, full_at_epoch=full_at_epoch)
        self.num_steps = full_at_epoch if num_steps is None else num_steps
        if self.num_steps < 1:
            raise InputError(f"num_steps={num_steps} must be at least 1")

    def _fraction(self, progress: float) -> float:
        s = self.start_fraction
        return s + (1 - s) * math.floor(self.num_steps * progress + 1e-9) / self.num_steps


class ExponentialPacing(Pacing):
    """Exponential pacing (Hacohen & Weinshall, 2019): ``min(1, s * (1 / s) ** (e / E))``."""

    def _fraction(self, progress: float) -> float:
        s = self.start_fraction
        return s * (1 / s) ** progress
