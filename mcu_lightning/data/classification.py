"""Classification sets for MU-Bench style unlearning: a train part split into forget and retain, and a test part.

The offline default is scikit-learn's digits (1797 8x8 grey images, 10 classes), scaled to [0, 1] as
``[1, 8, 8]`` float tensors. Any Hugging Face image or text classification dataset loads by name (or from a
``save_to_disk`` folder) through ``datasets``: images are kept as ``[C, H, W]`` uint8 (the collator scales, resizes
and normalises each batch), texts as token ids. The forget set is a reproducible fraction of the train part (from
the seed) or a JSON list of train indices; the retain set is the rest of the train part.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.storage import read_utf8
from mcu_lightning.data.padding import pad_sequences, padding_mask

IMAGE_COLUMNS = ("image", "img", "pixel_values")
TEXT_COLUMNS = ("text", "sentence", "content")
LABEL_COLUMNS = ("label", "labels", "fine_label")


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


@dataclass
class ClassificationParts:
    """A train part, a test part and the number of classes."""

    train: ClassificationDataset
    test: ClassificationDataset
    num_classes: int


def _split_train_test(num: int, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction={test_fraction} must lie in (0, 1)")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(test_fraction * num))
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def load_digits_parts(test_fraction: float = 0.2, seed: int = 0) -> ClassificationParts:
    """scikit-learn digits: ``[N, 1, 8, 8]`` floats in [0, 1] (pixel / 16), 10 classes, a seeded test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.long)
    full = ClassificationDataset(x, y)
    train_idx, test_idx = _split_train_test(len(y), test_fraction, seed)
    return ClassificationParts(full.subset(train_idx), full.subset(test_idx), 10)


def _column(names: Sequence[str], candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in names), None)


def image_to_array(image: Any, mode: str, size: int | None = None) -> np.ndarray:
    """A PIL image (or array) -> ``[H, W, C]`` uint8 in ``mode``, resized to ``size x size`` when given."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    image = image.convert(mode)
    if size is not None:
        image = image.resize((size, size))
    array = np.asarray(image, dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], -1)


def images_to_tensor(images: Sequence[Any], image_size: int) -> Tensor:
    """Images -> ``[N, C, H, W]`` uint8: at their own size when they all share one (the collator resizes each
    batch; CIFAR at 224 px would otherwise hold 30 GB of floats), else resized to ``image_size`` here."""
    from PIL import Image

    mode = "L" if getattr(images[0], "mode", "RGB") in ("L", "1") else "RGB"
    sizes = {im.size if isinstance(im, Image.Image) else np.asarray(im).shape[:2][::-1] for im in images}
    size = None if len(sizes) == 1 else image_size
    arrays = np.stack([image_to_array(im, mode, size) for im in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


def hf_to_dataset(
    data: Any, image_size: int = 32, tokenizer: Any = None, max_length: int = 128
) -> tuple[ClassificationDataset, int]:
    """A ``datasets.Dataset`` with an image or text column and a label column -> dataset and class count."""
    names = data.column_names
    label_col = _column(names, LABEL_COLUMNS)
    if label_col is None:
        raise KeyError(f"no label column among {LABEL_COLUMNS} in fields {names}")
    labels = torch.tensor(data[label_col], dtype=torch.long)
    feature = data.features[label_col]
    num_classes = int(getattr(feature, "num_classes", 0) or int(labels.max()) + 1)
    image_col, text_col = _column(names, IMAGE_COLUMNS), _column(names, TEXT_COLUMNS)
    if image_col is not None:
        inputs: Tensor | list[list[int]] = images_to_tensor(data[image_col], image_size)
    elif text_col is not None:
        if tokenizer is None:
            raise InputError(f"text column '{text_col}' needs a tokenizer; pass tokenizer=<path or Hub name>")
        inputs = tokenizer(list(data[text_col]), truncation=True, max_length=max_length)["input_ids"]
    else:
        raise KeyError(f"no image column {IMAGE_COLUMNS} nor text column {TEXT_COLUMNS} in fields {names}")
    return ClassificationDataset(inputs, labels), num_classes


def load_hf_parts(
    name: str,
    image_size: int = 32,
    tokenizer: Any = None,
    max_length: int = 128,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ClassificationParts:
    """A Hub dataset name or a ``save_to_disk`` folder: its ``train``/``test`` splits, or a seeded test split."""
    import datasets

    if Path(name).expanduser().is_dir():
        loaded = datasets.load_from_disk(str(Path(name).expanduser()))
    else:
        loaded = datasets.load_dataset(name)
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise KeyError(f"dataset {name!r} has splits {list(loaded)} but no 'train'")
        train, num_classes = hf_to_dataset(loaded["train"], image_size, tokenizer, max_length)
        if "test" in loaded:
            test, _ = hf_to_dataset(loaded["test"], image_size, tokenizer, max_length)
            return ClassificationParts(train, test, num_classes)
        full = train
    else:
        full, num_classes = hf_to_dataset(loaded, image_size, tokenizer, max_length)
    train_idx, test_idx = _split_train_test(len(full), test_fraction, seed)
    return ClassificationParts(full.subset(train_idx), full.subset(test_idx), num_classes)


def select_forget(
    num_train: int, fraction: float = 0.1, seed: int = 0, index_file: str | Path | None = None
) -> tuple[Tensor, Tensor]:
    """``(forget, retain)`` train indices: ``round(fraction * N)`` (at least 1) drawn from the seed, or a file.

    ``index_file`` is a JSON list of train indices; the retain set is every other train index.
    """
    if index_file is not None:
        path = Path(index_file)
        if not path.is_file():
            raise FileNotFoundError(f"forget index file '{path}' does not exist; give a JSON list of train indices")
        forget = torch.tensor(sorted(set(json.loads(read_utf8(path, "forget index file")))), dtype=torch.long)
        if forget.numel() == 0:
            raise InputError(f"forget index file '{path}' is empty; an empty forget set has nothing to unlearn")
        if forget.min() < 0 or forget.max() >= num_train:
            raise InputError(f"forget index file '{path}' has indices outside [0, {num_train}) of the train part")
    else:
        if not 0 < fraction < 1:
            raise InputError(f"forget_fraction={fraction} must lie in (0, 1), e.g. 0.1 for 10 % of the train part")
        count = max(1, round(fraction * num_train))
        if count >= num_train:
            raise InputError(f"forget_fraction={fraction} leaves no retain samples out of {num_train}")
        perm = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))
        forget = perm[:count].sort().values
    mask = torch.ones(num_train, dtype=torch.bool)
    mask[forget] = False
    retain = mask.nonzero().flatten()
    if retain.numel() == 0:
        raise InputError("the forget set covers the whole train part; nothing is left to retain")
    return forget, retain
