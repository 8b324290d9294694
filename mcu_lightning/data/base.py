"""The base data module: forget/retain training pairs plus named evaluation splits.

An unlearning epoch runs once over the forget set; each forget item gets a retain partner drawn from
(seed, epoch) (distinct partners while the retain set is large enough), and a training batch is
``{"forget": sub_batch, "retain": sub_batch}`` (``retain`` absent when ``use_retain=False``). With
``finetune_split`` set, batches are ``{"train": sub_batch}`` over that split instead. The forget order can
come from a ``CurriculumSampler``. Evaluation loaders are named by split (``eval_splits``); validation and
test return them as a dict by split name, in that order (Lightning's ``dataloader_idx``). Samplers
(:mod:`mcu_lightning.data.samplers`) depend only on ``seed`` and the epoch, and training loaders resume
mid-epoch exactly (:mod:`mcu_lightning.data.loader`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.per_sample import ScoresSamples
from mcu_lightning.data.loader import ResumableDataLoader
from mcu_lightning.data.paired import KeyedCollator, PairedDataset
from mcu_lightning.data.samplers.curriculum import SCORINGS, Curriculum, CurriculumSampler
from mcu_lightning.data.samplers.epoch_random import EpochRandomSampler
from mcu_lightning.data.samplers.forget_retain import ForgetRetainSampler


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
            sampler = EpochRandomSampler(num_samples=len(data), seed=self.seed)
            collate = KeyedCollator(self.collate_fn(), "train")
            return self._loader(data, self.batch_size, sampler, collate, loader_class=ResumableDataLoader)
        forget = self._require(self.forget_dataset, "forget")
        retain = self.retain_dataset if self.use_retain else None
        sampler = ForgetRetainSampler(
            num_forget=len(forget),
            num_retain=len(retain) if retain is not None else None,
            forget_sampler=self.forget_sampler,
            seed=self.seed,
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
        return CurriculumSampler(
            forget, scores=scores, order=curriculum.order, pacing=curriculum.pacing, seed=self.seed
        )

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
