"""Curriculum sampling over the forget set: score once, order, and grow the visible pool by a pacing function.

``Curriculum`` holds the settings a data module takes (``curriculum:`` in YAML); ``CurriculumSampler`` draws the
forget order from them. The pool grows by a :class:`~mcu_lightning.data.samplers.pacing.Pacing` schedule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Sampler

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.storage import read_utf8
from mcu_lightning.core.streams import stream_generator
from mcu_lightning.data.samplers.pacing import LinearPacing, Pacing

SCORINGS = ("loss", "length")
ORDERS = ("easy_first", "hard_first")


@dataclass
class Curriculum:
    """Curriculum settings of the forget sampler.

    ``scoring``: ``"loss"`` (per-sample loss under the starting model, computed once at ``setup("fit")``
    through ``trainer.lightning_module.per_sample_loss``, a
    :class:`~mcu_lightning.core.per_sample.ScoresSamples`), ``"length"`` (answer tokens), or a score file.
    """

    scoring: str = "loss"
    order: str = "easy_first"
    pacing: Pacing = field(default_factory=LinearPacing)


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
