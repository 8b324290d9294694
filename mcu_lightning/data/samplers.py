"""Curriculum sampling over the forget set: score once, order, and grow the visible pool by a pacing function.

Pacing functions follow curriculum learning with a pacing schedule (Hacohen & Weinshall, 2019, "On The
Power of Curriculum Learning in Training Deep Networks") and competence-based curricula (Platanios et al.,
2019, "Competence-based Curriculum Learning for Neural Machine Translation"): the fraction of the
(sorted) data visible at epoch e grows from ``start_fraction`` s to 1 at ``full_at_epoch`` E.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Sampler

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.storage import read_utf8
from mcu_lightning.core.streams import stream_generator

ORDERS = ("easy_first", "hard_first")


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
        super().__init__(start_fraction, full_at_epoch)
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


def length_scores(dataset: Sequence) -> Tensor:
    """Per-sample difficulty as length: the number of labelled tokens (or of input ids) of each item."""
    scores = []
    for i in range(len(dataset)):
        item = dataset[i]
        if "labels" in item and not isinstance(item["labels"], int) and _numel(item["labels"]) > 1:
            scores.append(sum(1 for v in _flat(item["labels"]) if v != -100))
        elif "input_ids" in item:
            scores.append(_numel(item["input_ids"]))
        else:
            raise InputError("scoring='length' needs items with token 'labels' or 'input_ids'; use loss scores")
    return torch.tensor(scores, dtype=torch.float)


def _flat(x: object) -> list:
    return x.flatten().tolist() if isinstance(x, Tensor) else list(x)


def _numel(x: object) -> int:
    return x.numel() if isinstance(x, Tensor) else len(x)


def read_scores(path: str | Path) -> Tensor:
    """Scores from a file: a JSON list, a ``.pt`` tensor, or one number per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"curriculum score file '{path}' does not exist")
    if path.suffix == ".pt":
        return torch.as_tensor(torch.load(path, map_location="cpu", weights_only=True), dtype=torch.float)
    text = read_utf8(path, "curriculum score file")
    values = json.loads(text) if path.suffix == ".json" else [float(v) for v in text.split()]
    return torch.as_tensor(values, dtype=torch.float)


class CurriculumSampler(Sampler[int]):
    """Yields ``len(dataset)`` indices per epoch drawn from the visible pool of the ordered samples.

    ``scores``: one difficulty per sample (low = easy, e.g. the loss under the starting model), a path to
    a score file, or ``"length"``. ``order="easy_first"`` sorts by ascending score, ``"hard_first"`` by
    descending (ties broken by index). At epoch e the pool is the first ``ceil(pacing.fraction(e) * N)``
    samples; it is shuffled by stream ``curriculum`` at (seed, epoch) (:mod:`mcu_lightning.core.streams`) and
    repeated to fill a constant length N, so every epoch has the same number of steps. Call ``set_epoch`` each
    epoch (Lightning does, also through its ``DistributedSamplerWrapper``, which needs every rank to draw the same
    list: the draw depends only on ``seed`` and ``epoch``).
    """

    def __init__(
        self,
        dataset: Sequence,
        scores: Tensor | Sequence[float] | str | Path = "length",
        order: str = "easy_first",
        pacing: Pacing | None = None,
        seed: int = 0,
    ) -> None:
        if order not in ORDERS:
            raise InputError(f"order={order!r}; use one of {ORDERS}")
        self.num_samples = len(dataset)
        if self.num_samples == 0:
            raise InputError("curriculum over an empty dataset; the forget set has no samples")
        if isinstance(scores, str) and scores == "length":
            scores = length_scores(dataset)
        elif isinstance(scores, (str, Path)):
            scores = read_scores(scores)
        scores = torch.as_tensor(scores, dtype=torch.float).flatten()
        if scores.numel() != self.num_samples:
            raise InputError(f"got {scores.numel()} curriculum scores for {self.num_samples} samples; give one each")
        self.scores = scores
        key = scores if order == "easy_first" else -scores
        self.ordered = torch.sort(key, stable=True).indices  # easiest first under the chosen order
        self.order = order
        self.pacing = pacing if pacing is not None else LinearPacing()
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def pool_size(self, epoch: int | None = None) -> int:
        fraction = self.pacing.fraction(self.epoch if epoch is None else epoch)
        return max(1, min(self.num_samples, math.ceil(fraction * self.num_samples - 1e-9)))

    def visible(self, epoch: int | None = None) -> Tensor:
        """The indices visible at ``epoch`` (default: the current one), in curriculum order."""
        return self.ordered[: self.pool_size(epoch)]

    def __iter__(self) -> Iterator[int]:
        pool = self.visible()
        generator = stream_generator(self.seed, "curriculum", self.epoch)
        repeats = math.ceil(self.num_samples / len(pool))
        draws = torch.cat([pool[torch.randperm(len(pool), generator=generator)] for _ in range(repeats)])
        return iter(draws[: self.num_samples].tolist())

    def __len__(self) -> int:
        return self.num_samples
