"""Which way a metric is better, as one string every layer reads (suites state it, barriers, ``export_best`` and the
report's arrows read it).

``higher``, ``lower``, ``zero`` (closer to 0 from either side: privleak), ``none`` (reported, never ranked: a holdout
split's values) or ``toward <x>``: closer to ``x`` from either side, as an MIA AUC is read against the oracle's AUC
(or against 0.5, a chance-level attack, without an oracle): an AUC well under the target leaks as much as one well
over it (over-unlearning makes the forget set detectable by being *less* likely than the non-members).
"""

from __future__ import annotations

import math

NAMED: tuple[str, ...] = ("higher", "lower", "zero", "none")
_TOWARD = "toward "
#: The arrow of each named direction in tables and figure labels.
ARROWS: dict[str, str] = {"higher": "↑", "lower": "↓", "zero": "→0", "none": "·"}


def toward(target: float) -> str:
    """The direction "closer to ``target`` is better": ``toward 0.5``."""
    if not math.isfinite(target):
        raise ValueError(f"a direction's target must be finite, got {target}")
    return f"{_TOWARD}{target:.6g}"


def target(direction: str) -> float | None:
    """The value a ``zero`` or ``toward <x>`` direction ranks distances from (0 or x); ``None`` for the others."""
    if direction == "zero":
        return 0.0
    if isinstance(direction, str) and direction.startswith(_TOWARD):
        return float(direction[len(_TOWARD) :])
    return None


def is_direction(direction: object) -> bool:
    """Whether ``direction`` is one this module defines."""
    if direction in NAMED:
        return True
    try:
        value = target(direction)  # type: ignore[arg-type]
    except ValueError:
        return False
    return value is not None and math.isfinite(value)


def arrow(direction: str) -> str:
    """``↑``, ``↓``, ``→0``, ``·`` or ``→0.5``; empty for an unknown direction."""
    if direction in ARROWS:
        return ARROWS[direction]
    value = target(direction) if is_direction(direction) else None
    return f"→{value:.3g}" if value is not None else ""


def ranking_key(direction: str, value: float) -> float:
    """Smaller is better: ``-value`` (higher), ``value`` (lower), ``|value - target|`` (zero, toward)."""
    if direction == "higher":
        return -value
    if direction == "lower":
        return value
    reference = target(direction)
    if reference is None:
        raise ValueError(f"direction {direction!r} does not rank; give higher, lower, zero or toward <x>")
    return abs(value - reference)
