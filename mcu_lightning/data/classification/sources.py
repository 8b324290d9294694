"""Where classification sets come from: scikit-learn's digits offline, or any Hugging Face dataset.

The offline default is scikit-learn's digits (1797 8x8 grey images, 10 classes), scaled to [0, 1] as
``[1, 8, 8]`` float tensors. Any Hugging Face image or text classification dataset loads by name (or from a
``save_to_disk`` folder) through ``datasets``: images are kept as ``[C, H, W]`` uint8 (the collator scales, resizes
and normalises each batch), texts as token ids. Without a ``test`` split, a seeded fraction is held out as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.data.classification.dataset import ClassificationDataset, ClassificationParts

IMAGE_COLUMNS = ("image", "img", "pixel_values")
TEXT_COLUMNS = ("text", "sentence", "content")
LABEL_COLUMNS = ("label", "labels", "fine_label")


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
