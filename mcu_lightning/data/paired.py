"""The unlearning batch: forget items paired with retain items, collated part by part.

``ForgetRetainSampler`` (:mod:`mcu_lightning.data.samplers.forget_retain`) yields ``(forget_index, retain_index)``;
``PairedDataset`` turns a pair into ``{"forget": item, "retain": item}``; ``KeyedCollator`` collates each part
with the task's collator, so a batch is ``{"forget": sub_batch, "retain": sub_batch}`` (or ``{"train": ...}``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset


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
