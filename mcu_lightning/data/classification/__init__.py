"""Image and text classification (MU-Bench style): forget/retain from a train part, and a test part.

``datamodule`` (``ClassificationDataModule``) takes its parts from ``sources`` (scikit-learn's digits, or a Hugging
Face dataset), draws the forget set with ``forget_set``, holds the samples in ``dataset`` and batches them with
``collate``.
"""

from mcu_lightning.data.classification.collate import ClassificationCollator
from mcu_lightning.data.classification.datamodule import ClassificationDataModule
from mcu_lightning.data.classification.dataset import ClassificationDataset, ClassificationParts
from mcu_lightning.data.classification.forget_set import select_forget
from mcu_lightning.data.classification.sources import load_digits_parts, load_hf_parts

__all__ = [
    "ClassificationCollator",
    "ClassificationDataModule",
    "ClassificationDataset",
    "ClassificationParts",
    "load_digits_parts",
    "load_hf_parts",
    "select_forget",
]
