"""Classification items -> a batch: images scaled, resized and normalised per batch; texts padded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.data.padding import pad_sequences, padding_mask


class ClassificationCollator:
    """Stacks image items; pads text items (right) into ``input_ids`` and ``attention_mask``.

    Images stored as ``uint8`` are scaled to [0, 1] per batch, resized to ``image_size`` when they differ
    (bilinear, antialiased) and normalised ``(x - mean) / std`` per channel when ``mean``/``std`` are given (the
    model's image processor statistics). Float images (digits) pass through unchanged unless asked.
    """

    def __init__(
        self,
        pad_token_id: int = 0,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if (mean is None) != (std is None):
            raise InputError("image normalisation needs both image_mean and image_std (or neither)")
        if std is not None and any(v <= 0 for v in std):
            raise InputError(f"image_std must be positive, got {list(std)}")
        self.pad_token_id = pad_token_id
        self.image_size = image_size
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float).view(-1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float).view(-1, 1, 1)

    def images(self, stacked: Tensor) -> Tensor:
        """``[B, C, h, w]`` uint8 or float -> ``[B, C, S, S]`` float, normalised when statistics are set."""
        x = stacked.float().div_(255.0) if stacked.dtype == torch.uint8 else stacked
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        if self.mean is not None:
            if self.mean.shape[0] != x.shape[1]:
                raise InputError(
                    f"image_mean/image_std have {self.mean.shape[0]} channels but the images have {x.shape[1]}"
                )
            x = (x - self.mean) / self.std
        return x

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
        out = {
            "labels": torch.stack([torch.as_tensor(it["labels"]) for it in items]),
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        }
        if "inputs" in items[0]:
            out["inputs"] = self.images(torch.stack([it["inputs"] for it in items]))
        else:
            ids = [it["input_ids"] for it in items]
            out["input_ids"] = pad_sequences(ids, self.pad_token_id)
            out["attention_mask"] = padding_mask(ids, out["input_ids"].shape[1])
        return out
