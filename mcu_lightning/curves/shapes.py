"""Curve shapes: the weights ``c_k(t)`` that mix the bends ``P_0 .. P_{n-1}`` into ``theta(t) = sum_k c_k(t) P_k``.

``P_0`` and ``P_{n-1}`` are the two endpoints; the ``n - 2`` bends in between are the trainable control points
(Garipov et al., 2018, "Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs", Sec. 3).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from mcu_lightning.core.errors import InputError


def as_t(t: float | Tensor) -> float:
    """``t`` as a Python float in [0, 1], or a clear error."""
    if isinstance(t, Tensor):
        if t.numel() != 1:
            raise InputError(f"t must be a scalar, got a tensor of shape {tuple(t.shape)}")
        t = t.item()
    t = float(t)
    if not 0.0 <= t <= 1.0:  # also rejects NaN
        raise InputError(f"t must lie in [0, 1], got {t}")
    return t


class CurveShape:
    """Base class of curve shapes: ``num_bends`` bends (endpoints included) and their weights at ``t``.

    Subclasses implement :meth:`_weights` on a Python float; :meth:`weights` validates ``t`` and returns the
    ``num_bends`` weights (they sum to 1), :meth:`coefficients` the same as a float32 tensor. A shape whose weights
    differ per tensor (SLERP's) sets ``shared_weights = False``: it has no weights of its own, and only the curve kind
    built for it (:class:`~mcu_lightning.curves.slerp.SlerpCurve`) computes its ``theta(t)``.
    """

    #: Whether ``theta(t) = sum_k c_k(t) P_k`` with ONE weight list ``c(t)`` for every tensor (what a plain
    #: :class:`~mcu_lightning.curves.curve.Curve` computes).
    shared_weights: ClassVar[bool] = True

    def __init__(self, num_bends: int) -> None:
        if int(num_bends) != num_bends or num_bends < 2:
            raise InputError(f"a curve needs num_bends >= 2 (its two endpoints), got {num_bends}")
        self.num_bends = int(num_bends)

    def coefficients(self, t: float | Tensor) -> Tensor:
        """The weights ``[c_0(t), ..., c_{n-1}(t)]`` as a float32 tensor of shape ``[num_bends]``."""
        return torch.tensor(self.weights(t), dtype=torch.float32)

    def weights(self, t: float | Tensor) -> list[float]:
        """The weights ``[c_0(t), ..., c_{n-1}(t)]`` as Python floats (no tensor on a curve's hot path)."""
        if not self.shared_weights:
            raise InputError(f"{self!r} has no weights shared by every tensor; build its own curve kind")
        return self._weights(as_t(t))

    def _weights(self, t: float) -> list[float]:
        raise NotImplementedError

    def bend_ts(self) -> list[float]:
        """Where the bends sit on [0, 1] for a straight-line init: ``t_k = k / (n - 1)``."""
        n = self.num_bends
        return [k / (n - 1) for k in range(n)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_bends={self.num_bends})"


class Bezier(CurveShape):
    """Bezier curve with Bernstein weights ``c_k(t) = binom(n-1, k) t^k (1-t)^(n-1-k)`` (Garipov et al., 2018).

    ``n = 3`` is the quadratic curve ``(1-t)^2 w_0 + 2t(1-t) theta + t^2 w_1`` used by MCU (Cheng & Amiri, 2025).
    """

    def __init__(self, num_bends: int = 3) -> None:
        super().__init__(num_bends)

    def _weights(self, t: float) -> list[float]:
        d = self.num_bends - 1
        return [math.comb(d, k) * t**k * (1.0 - t) ** (d - k) for k in range(d + 1)]


class PolyChain(CurveShape):
    """Polygonal chain through the bends at ``t_k = k / (n-1)`` (Garipov et al., 2018, Sec. 3.2).

    On segment ``[t_k, t_{k+1}]``: ``theta(t) = (1 - s) P_k + s P_{k+1}`` with ``s = (t - t_k)(n - 1)``.
    """

    def __init__(self, num_bends: int = 3) -> None:
        super().__init__(num_bends)

    def _weights(self, t: float) -> list[float]:
        segments = self.num_bends - 1
        k = min(int(t * segments), segments - 1)  # t = 1 falls on the last segment
        s = t * segments - k
        weights = [0.0] * self.num_bends
        weights[k] = 1.0 - s
        weights[k + 1] = s
        return weights


class Line(PolyChain):
    """The straight line ``theta(t) = (1 - t) w_0 + t w_1`` (two bends, no control point): a training-free path."""

    def __init__(self) -> None:
        super().__init__(num_bends=2)

    def __repr__(self) -> str:
        return "Line()"


class Linear(Line):
    """:class:`Line` under its former name: the same path, kept for shipped configs (``mcu_lightning.curves.Linear``)
    and what runs built from them record (``Linear()`` in checkpoints and export records)."""

    def __repr__(self) -> str:
        return "Linear()"
