"""The fine-tuning order: a fresh permutation each epoch, drawn from (seed, epoch) alone."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.streams import stream_generator


class EpochRandomSampler(Sampler[int]):
    """A permutation of ``range(n)`` from stream ``data-order`` at (seed, epoch): the same order after a restart at
    any epoch, and unrelated orders for different seeds.

    ``RandomSampler`` with a seeded generator draws epoch e's order from the generator state left by the
    epochs before it, so a run resumed at epoch e (a fresh generator) would see a different order.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        if num_samples < 1:
            raise InputError("the fine-tuning split is empty; nothing to train on")
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = stream_generator(self.seed, "data-order", self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples
