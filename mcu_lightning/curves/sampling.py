"""Where on the curve each training step looks: samplers of ``t`` in [0, 1], and the evaluation grid."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.streams import stream_generator


class TSampler:
    """Base class of ``t`` samplers: :meth:`sample` draws one ``t`` in [0, 1] per training batch.

    A curve fit calls :meth:`draw` with the run's seed and the draw's index, so that every t depends on its key
    alone (a resumed fit draws the same sequence); samplers whose draws are independent only implement
    :meth:`sample`, which :meth:`draw` calls with the draw's own generator.
    """

    def sample(self, generator: torch.Generator | None = None) -> float:
        raise NotImplementedError

    def draw(self, seed: int, index: int, generator: torch.Generator) -> float:
        """The ``index``-th t of a fit seeded ``seed``; ``generator`` is that draw's own stream."""
        return self.sample(generator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Uniform(TSampler):
    """``t ~ U[0, 1]``, one draw per batch (Garipov et al., 2018, Eq. 3)."""

    def sample(self, generator: torch.Generator | None = None) -> float:
        return torch.rand((), generator=generator).item()


class ClippedNormal(TSampler):
    """``t ~ N(mean, std^2)`` clipped to [0, 1]: concentrates training on the middle of the curve (MCU authors)."""

    def __init__(self, mean: float = 0.5, std: float = 0.1) -> None:
        if std < 0:
            raise InputError(f"std must be >= 0, got {std}")
        self.mean = float(mean)
        self.std = float(std)

    def sample(self, generator: torch.Generator | None = None) -> float:
        t = self.mean + self.std * torch.randn((), generator=generator).item()
        return min(max(t, 0.0), 1.0)

    def __repr__(self) -> str:
        return f"ClippedNormal(mean={self.mean}, std={self.std})"


class Stratified(TSampler):
    """Stratified uniform: [0, 1] cut into ``num_strata`` equal strata, visited once per cycle in a shuffled order,
    with ``t`` uniform inside the stratum. Covers the curve evenly with fewer steps than :class:`Uniform`.

    In a fit (:meth:`draw`) draw ``i`` is position ``i mod K`` of cycle ``i // K`` (``K = num_strata``); the cycle's
    order is a permutation from stream ``stratified-order`` at (seed, cycle), so the stratum depends on (seed, i)
    alone and a resumed fit continues the same cycle. :meth:`sample` without an index keeps the cycle in Python
    state instead (for interactive use; it does not survive a checkpoint).
    """

    def __init__(self, num_strata: int = 8) -> None:
        if num_strata < 1:
            raise InputError(f"num_strata must be >= 1, got {num_strata}")
        self.num_strata = int(num_strata)
        self._order: list[int] = []

    def sample(self, generator: torch.Generator | None = None) -> float:
        if not self._order:
            self._order = torch.randperm(self.num_strata, generator=generator).tolist()
        stratum = self._order.pop()
        jitter = torch.rand((), generator=generator).item()
        return (stratum + jitter) / self.num_strata

    def draw(self, seed: int, index: int, generator: torch.Generator) -> float:
        cycle, position = divmod(int(index), self.num_strata)
        order = torch.randperm(self.num_strata, generator=stream_generator(seed, "stratified-order", cycle))
        jitter = torch.rand((), generator=generator).item()
        return (int(order[position]) + jitter) / self.num_strata

    def __repr__(self) -> str:
        return f"Stratified(num_strata={self.num_strata})"


def t_grid(points: int | Sequence[float] = 31) -> list[float]:
    """``points`` evenly spaced values on [0, 1] (both endpoints included, exactly 0.0 and 1.0), or the given
    values, checked to lie in [0, 1]."""
    if isinstance(points, int):
        if points < 2:
            raise InputError(f"eval_ts={points}: a curve grid needs at least 2 points (both endpoints)")
        return [i / (points - 1) for i in range(points)]
    ts = [float(t) for t in points]
    if any(not 0.0 <= t <= 1.0 for t in ts):
        raise InputError(f"eval_ts {ts} has values outside [0, 1]; t parametrises the curve from 0 to 1")
    return ts
