"""Forget/retain pairs: one unlearning epoch runs once over the forget set, each item with a retain partner.

Both the forget order and the partners come from (seed, epoch) streams
(:func:`~mcu_lightning.core.streams.stream_generator`), so two seeds share no order, a restart at any epoch sees the
same draw, and under DDP Lightning's ``DistributedSamplerWrapper`` shards the same list on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.streams import stream_generator


class ForgetRetainSampler(Sampler[tuple[int, int]]):
    """Yields ``(forget_index, retain_index)`` pairs, one per forget item (``retain_index = -1`` without retain).

    The forget order comes from ``forget_sampler`` (e.g. a ``CurriculumSampler``) or a permutation from stream
    ``forget-order`` at (seed, epoch); partners come from stream ``retain-partners`` at (seed, epoch), so each
    forget item's partner is reproducible and changes between epochs. ``set_epoch`` reaches the inner
    sampler.
    """

    def __init__(
        self, num_forget: int, num_retain: int | None, forget_sampler: Sampler[int] | None = None, seed: int = 0
    ) -> None:
        if num_forget < 1:
            raise InputError("the forget set is empty; nothing to unlearn")
        if num_retain is not None and num_retain < 1:
            raise InputError("the retain set is empty; pass use_retain=False to train on the forget set alone")
        self.num_forget, self.num_retain = num_forget, num_retain
        self.forget_sampler = forget_sampler
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.forget_sampler, "set_epoch"):
            self.forget_sampler.set_epoch(epoch)

    def partners(self, epoch: int | None = None) -> Tensor:
        """The retain partner of every forget item at ``epoch`` (a ``[num_forget]`` long tensor)."""
        if self.num_retain is None:
            return torch.full((self.num_forget,), -1, dtype=torch.long)
        epoch = self.epoch if epoch is None else epoch
        generator = stream_generator(self.seed, "retain-partners", epoch)
        rounds = math.ceil(self.num_forget / self.num_retain)
        perms = [torch.randperm(self.num_retain, generator=generator) for _ in range(rounds)]
        return torch.cat(perms)[: self.num_forget]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.forget_sampler is not None:
            order = list(self.forget_sampler)
        else:
            generator = stream_generator(self.seed, "forget-order", self.epoch)
            order = torch.randperm(self.num_forget, generator=generator).tolist()
        partners = self.partners().tolist()
        return iter([(i, partners[i]) for i in order])

    def __len__(self) -> int:
        return len(self.forget_sampler) if self.forget_sampler is not None else self.num_forget
