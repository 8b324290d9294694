"""The data seam of DESIGN.md: forget/retain training pairs plus named evaluation splits.

An unlearning epoch runs once over the forget set; each forget item gets a retain partner drawn from
(seed, epoch) (distinct partners while the retain set is large enough), and a training batch is
``{"forget": sub_batch, "retain": sub_batch}`` (``retain`` absent when ``use_retain=False``). With
``finetune_split`` set, batches are ``{"train": sub_batch}`` over that split instead. The forget order can
come from a ``CurriculumSampler``. Evaluation loaders are named by split (``eval_splits``); validation and
test return them as a dict by split name, in that order (Lightning's ``dataloader_idx``). Samplers depend only on
``seed`` and the epoch (each draws from its own stream, :func:`~mcu_lightning.core.streams.stream_generator`
``(seed, name, epoch)``, so two seeds share no order), so under DDP
Lightning's ``DistributedSamplerWrapper`` shards the same draw on every rank.

Mid-epoch resume is exact: Lightning 2.6 restores a training loader's position only when the loader
itself is ``_Stateful`` (``state_dict``/``load_state_dict``; a plain ``DataLoader`` restarts the epoch from
its first batch and warns). ``ResumableDataLoader`` records how many batches of the current epoch it has
handed out and, after ``load_state_dict``, skips that many at the next ``iter``; since every sampler here
draws from (seed, stream, epoch) (the trainer restores the epoch), the resumed run sees exactly the remaining
batches of the uninterrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.per_sample import ScoresSamples
from mcu_lightning.core.streams import stream_generator
from mcu_lightning.data.samplers import CurriculumSampler, LinearPacing, Pacing

SCORINGS = ("loss", "length")


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


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position in the epoch survives a checkpoint (Lightning's ``_Stateful`` protocol).

    ``state_dict()`` is ``{"batches_yielded": k}``: the batches of the current pass handed out so far (0 once
    a pass is complete). Lightning 2.6 saves it with every checkpoint and, when it resumes mid-epoch, calls
    ``load_state_dict`` before iterating; the next pass then drops its first k batches. Lightning's fetcher
    does not prefetch from sized loaders, so at a checkpoint written in ``on_train_batch_end`` k equals the
    number of batches already trained on. Skipped batches are still drawn (the sampler must advance) and
    collated, which costs one pass over already tokenized items at most.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._yielded = 0
        self._skip = 0

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        self._yielded = 0
        iterator = super().__iter__()
        return self._counting(iterator, skip)

    def _counting(self, iterator: Iterator[Any], skip: int) -> Iterator[Any]:
        for index, batch in enumerate(iterator):
            if index < skip:
                continue
            self._yielded = index + 1
            yield batch
        self._yielded = 0  # a finished pass resumes at the start of the next one

    def state_dict(self) -> dict[str, int]:
        """``{"batches_yielded": k}``, with k = 0 once the pass has handed out its last batch.

        A checkpoint written on an epoch's last batch is a finished pass: Lightning resumes it at the start of
        the next epoch, which must then run whole (a k equal to the epoch's length would skip all of it).
        """
        return {"batches_yielded": 0 if self._yielded >= self._batches_per_pass() else self._yielded}

    def _batches_per_pass(self) -> int | float:
        try:
            return len(self)
        except TypeError:  # an iterable dataset of unknown length: no pass is known to be finished
            return math.inf

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._skip = int(state_dict.get("batches_yielded", 0))


class PairedDataset(Dataset):
    """``dataset[(i, j)] -> {"forget": forget[i], "retain": retain[j]}`` (no ``retain`` when ``j < 0``)."""

    def __init__(self, forget: Dataset, retain: Dataset | None = None) -> None:
        self.forget, self.retain = forget, retain

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, pair: tuple[int, int]) -> dict[str, Any]:
        i, j = pair
        item = {"forget": self.forget[i]}
        if self.retain is not None and j >= 0:
            item["retain"] = self.retain[j]
        return item


class KeyedCollator:
    """Collates each named part of the items: ``{"forget": ..., "retain": ...}``, or ``{key: ...}`` when given."""

    def __init__(self, collate: Callable[[list], dict[str, Any]], key: str | None = None) -> None:
        self.collate, self.key = collate, key

    def __call__(self, items: list) -> dict[str, Any]:
        if self.key is not None:
            return {self.key: self.collate(items)}
        return {name: self.collate([it[name] for it in items]) for name in items[0]}


class UnlearningDataModule(L.LightningDataModule):
    """Shared logic of the QA and classification data modules (see module docstring).

    Subclasses set ``task`` and ``default_eval_splits`` and implement ``load_forget_retain``,
    ``load_finetune``, ``load_eval`` and ``collate_fn``/``eval_collate_fn``.
    """

    task: str = ""
    default_eval_splits: tuple[str, ...] = ()

    def __init__(
        self,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        use_retain: bool = True,
        finetune_split: str | None = None,
        curriculum: Curriculum | None = None,
        eval_splits: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.use_retain = use_retain
        self.finetune_split = finetune_split
        self.curriculum = curriculum
        self.eval_splits = list(eval_splits) if eval_splits is not None else list(self.default_eval_splits)
        unknown = [s for s in self.eval_splits if s not in self.default_eval_splits]
        if unknown:
            raise InputError(f"unknown eval splits {unknown}; choose from {list(self.default_eval_splits)}")
        if curriculum is not None and not (curriculum.scoring in SCORINGS or Path(curriculum.scoring).suffix):
            raise InputError(f"curriculum scoring {curriculum.scoring!r}: use 'loss', 'length' or a score file path")
        self.forget_dataset: Dataset | None = None
        self.retain_dataset: Dataset | None = None
        self.finetune_dataset: Dataset | None = None
        self.eval_datasets: dict[str, Dataset] = {}
        self.forget_sampler: CurriculumSampler | None = None

    # --- what subclasses provide -------------------------------------------------------------------
    def load_forget_retain(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def load_finetune(self, split: str) -> Dataset:
        raise NotImplementedError

    def load_eval(self, split: str) -> Dataset:
        raise NotImplementedError

    def collate_fn(self) -> Callable[[list], dict[str, Any]]:
        raise NotImplementedError

    def eval_collate_fn(self) -> Callable[[list], dict[str, Any]]:
        return self.collate_fn()

    # --- Lightning hooks, in the order Lightning calls them -------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and self.finetune_dataset is None and self.forget_dataset is None:
            if self.finetune_split is not None:
                self.finetune_dataset = self.load_finetune(self.finetune_split)
            else:
                self.forget_dataset, self.retain_dataset = self.load_forget_retain()
                if len(self.forget_dataset) == 0:
                    raise InputError("the forget set is empty; nothing to unlearn")
                if self.curriculum is not None:
                    self.forget_sampler = self.build_curriculum(self.curriculum)
        for split in self.eval_splits:
            if split not in self.eval_datasets:
                self.eval_datasets[split] = self.load_eval(split)

    def train_dataloader(self) -> DataLoader:
        if self.finetune_split is not None:
            data = self._require(self.finetune_dataset, "finetune")
            sampler = EpochRandomSampler(len(data), self.seed)
            collate = KeyedCollator(self.collate_fn(), "train")
            return self._loader(data, self.batch_size, sampler, collate, loader_class=ResumableDataLoader)
        forget = self._require(self.forget_dataset, "forget")
        retain = self.retain_dataset if self.use_retain else None
        sampler = ForgetRetainSampler(
            len(forget), len(retain) if retain is not None else None, self.forget_sampler, self.seed
        )
        paired = PairedDataset(forget, retain)
        return self._loader(paired, self.batch_size, sampler, KeyedCollator(self.collate_fn()), ResumableDataLoader)

    def eval_dataloader(self, split: str) -> DataLoader:
        if split not in self.eval_datasets:
            if split not in self.default_eval_splits:
                raise KeyError(f"unknown eval split {split!r}; choose from {list(self.default_eval_splits)}")
            self.eval_datasets[split] = self.load_eval(split)
        return self._loader(self.eval_datasets[split], self.eval_batch_size, None, self.eval_collate_fn())

    def val_dataloader(self) -> dict[str, DataLoader]:
        """The evaluation loaders by split name, in ``eval_splits`` order (Lightning's ``dataloader_idx``)."""
        return {split: self.eval_dataloader(split) for split in self.eval_splits}

    def test_dataloader(self) -> dict[str, DataLoader]:
        """The evaluation loaders by split name (``dm.test_dataloader()["forget"]``), in ``eval_splits`` order."""
        return {split: self.eval_dataloader(split) for split in self.eval_splits}

    def forget_dataloader(self, batch_size: int | None = None) -> DataLoader:
        """The forget set in order, as plain sub-batches (for loss hooks such as a saliency mask)."""
        forget = self._require(self.forget_dataset, "forget")
        return self._loader(forget, batch_size or self.eval_batch_size, None, self.collate_fn())

    # --- helpers ------------------------------------------------------------------------------------
    def build_curriculum(self, curriculum: Curriculum) -> CurriculumSampler:
        forget = self._require(self.forget_dataset, "forget")
        scores: Any = curriculum.scoring
        if curriculum.scoring == "loss":
            scores = self.loss_scores()
        return CurriculumSampler(forget, scores, curriculum.order, curriculum.pacing, self.seed)

    @torch.no_grad()
    def loss_scores(self) -> Tensor:
        """Per-sample forget losses under the current model: ``trainer.lightning_module.per_sample_loss``."""
        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        if not isinstance(module, ScoresSamples):
            raise RuntimeError(
                "curriculum scoring='loss' needs a trainer whose LightningModule defines per_sample_loss(sub_batch); "
                "use scoring='length' or a score file outside a Trainer"
            )
        was_training = getattr(module, "training", False)
        if hasattr(module, "eval"):
            module.eval()
        device = getattr(module, "device", torch.device("cpu"))
        losses = [
            module.per_sample_loss(move_data_to_device(batch, device)).detach().float().cpu()
            for batch in self.forget_dataloader()
        ]
        if was_training:
            module.train()
        return torch.cat(losses)

    def _loader(
        self,
        data: Dataset,
        batch_size: int,
        sampler: Sampler | None,
        collate: Callable,
        loader_class: type[DataLoader] = DataLoader,
    ) -> DataLoader:
        return loader_class(
            data,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False if sampler is None else None,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=False,
        )

    @staticmethod
    def _require(data: Dataset | None, name: str) -> Dataset:
        if data is None:
            raise RuntimeError(f"the {name} dataset is not built; call setup('fit') first")
        return data


def overlapping(first: Sequence[str], second: Sequence[str]) -> list[str]:
    """The items of ``first`` that also occur in ``second`` (in ``first``'s order, without repeats)."""
    seen, other = set(), set(second)
    return [x for x in first if x in other and not (x in seen or seen.add(x))]
