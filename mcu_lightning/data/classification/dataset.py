"""A classification split: one tensor (image) or token-id list (text) per sample with its label.

``ClassificationParts`` is what a source returns: a train part, a test part and the number of classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mcu_lightning.core.errors import InputError


class ClassificationDataset(Dataset):
    """Items ``{"inputs": Tensor, "labels": long, "index": position in this split}``.

    ``inputs`` is one tensor per sample (images: float, or uint8 that the collator scales), or a list of token-id
    lists (texts; the collator pads them into ``input_ids``/``attention_mask``). ``source_index`` keeps each
    sample's row in the part it was taken from.
    """

    def __init__(self, inputs: Tensor | list[list[int]], labels: Tensor, source_index: Tensor | None = None) -> None:
        if len(inputs) != len(labels):
            raise InputError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs = inputs
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.source_index = torch.arange(len(labels)) if source_index is None else source_index
        self.is_text = not isinstance(inputs, Tensor)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = "input_ids" if self.is_text else "inputs"
        return {key: self.inputs[index], "labels": self.labels[index], "index": index}

    def subset(self, indices: Sequence[int] | Tensor) -> ClassificationDataset:
        """The samples at ``indices`` as a new split (its ``index`` counts from 0)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        inputs = [self.inputs[i] for i in idx.tolist()] if self.is_text else self.inputs[idx]
        return ClassificationDataset(inputs, self.labels[idx], self.source_index[idx])


@dataclass
class ClassificationParts:
    """A train part, a test part and the number of classes."""

    train: ClassificationDataset
    test: ClassificationDataset
    num_classes: int
