"""The classification data module (MU-Bench style): forget/retain from a train part, and a test part."""

from __future__ import annotations

from mcu_lightning.core.errors import InputError
from mcu_lightning.data.base import UnlearningDataModule
from mcu_lightning.data.classification.collate import ClassificationCollator
from mcu_lightning.data.classification.dataset import ClassificationDataset, ClassificationParts
from mcu_lightning.data.classification.forget_set import select_forget
from mcu_lightning.data.classification.sources import load_digits_parts, load_hf_parts
from mcu_lightning.data.samplers.curriculum import Curriculum

FINETUNE_SPLITS = ("train", "full", "retain", "forget")


class ClassificationDataModule(UnlearningDataModule):
    """Forget/retain image or text classification with eval splits ``forget``, ``retain``, ``test``.

    ``dataset``: ``"digits"`` (scikit-learn, offline), a Hub dataset name, or a ``save_to_disk`` folder.
    The test part is the dataset's ``test`` split, else a ``test_fraction`` drawn from ``data_seed``; the
    forget set is ``forget_fraction`` of the train part drawn from ``data_seed`` (independent of the
    training ``seed``) or the train indices in ``forget_index_file`` (a JSON list). ``finetune_split`` is
    ``"train"`` or ``"full"`` (the whole train part: the base model), ``"retain"`` (the oracle) or ``"forget"``.

    Hub images are kept as uint8 at their own size and each batch is resized to ``image_size`` and normalised with
    ``image_mean``/``image_std``, or with the statistics of ``processor`` (a model name or folder whose
    ``AutoImageProcessor`` the model was trained with, e.g. ``microsoft/resnet-50``). Without either, images reach
    the model in [0, 1]: right for models trained that way, wrong for ImageNet-style checkpoints.
    """

    task = "classification"
    default_eval_splits = ("forget", "retain", "test")

    def __init__(
        self,
        dataset: str = "digits",
        forget_fraction: float = 0.1,
        forget_index_file: str | None = None,
        test_fraction: float = 0.2,
        image_size: int = 32,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        processor: str | None = None,
        tokenizer: str | None = None,
        max_length: int = 128,
        data_seed: int = 0,
        eval_splits: list[str] | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        use_retain: bool = True,
        finetune_split: str | None = None,
        curriculum: Curriculum | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            seed=seed,
            use_retain=use_retain,
            finetune_split=finetune_split,
            curriculum=curriculum,
            eval_splits=eval_splits,
        )
        if forget_index_file is None and not 0 < forget_fraction < 1:
            raise InputError(f"forget_fraction={forget_fraction} must lie in (0, 1), e.g. 0.1 for 10 %")
        if finetune_split is not None and finetune_split not in FINETUNE_SPLITS:
            raise InputError(f"finetune_split={finetune_split!r}; use one of {FINETUNE_SPLITS}")
        self.save_hyperparameters(ignore=["curriculum"])
        self.dataset_name = dataset
        self.forget_fraction, self.forget_index_file = forget_fraction, forget_index_file
        self.test_fraction, self.image_size = test_fraction, image_size
        if processor is not None and (image_mean is not None or image_std is not None):
            raise InputError("give either processor (its image_mean/image_std are used) or image_mean/image_std")
        if (image_mean is None) != (image_std is None):
            raise InputError("image normalisation needs both image_mean and image_std (or neither)")
        self.image_mean, self.image_std, self.processor = image_mean, image_std, processor
        self.tokenizer_name, self.max_length = tokenizer, max_length
        self.data_seed = data_seed
        self._parts: ClassificationParts | None = None
        self._splits: dict[str, ClassificationDataset] = {}

    @property
    def parts(self) -> ClassificationParts:
        if self._parts is None:
            if self.dataset_name == "digits":
                self._parts = load_digits_parts(self.test_fraction, self.data_seed)
            else:
                tokenizer = None
                if self.tokenizer_name is not None:
                    from transformers import AutoTokenizer

                    tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_name)
                self._parts = load_hf_parts(
                    self.dataset_name, self.image_size, tokenizer, self.max_length, self.test_fraction, self.data_seed
                )
        return self._parts

    @property
    def num_classes(self) -> int:
        return self.parts.num_classes

    def split(self, name: str) -> ClassificationDataset:
        """``train``, ``forget``, ``retain`` or ``test`` (forget and retain are built once)."""
        if name not in self._splits:
            train = self.parts.train
            forget, retain = select_forget(len(train), self.forget_fraction, self.data_seed, self.forget_index_file)
            self._splits = {"train": train, "forget": train.subset(forget), "retain": train.subset(retain)}
            self._splits["test"] = self.parts.test
        return self._splits[name]

    def prepare_data(self) -> None:
        _ = self.parts

    def load_forget_retain(self) -> tuple[ClassificationDataset, ClassificationDataset]:
        return self.split("forget"), self.split("retain")

    def load_finetune(self, split: str) -> ClassificationDataset:
        return self.split("train" if split == "full" else split)

    def load_eval(self, split: str) -> ClassificationDataset:
        return self.split(split)

    def image_statistics(self) -> tuple[list[float] | None, list[float] | None]:
        """``(mean, std)`` per channel: the given ones, the processor's (read once), or ``(None, None)``."""
        if self.processor is None:
            return self.image_mean, self.image_std
        if self.image_mean is None:
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(self.processor)
            mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
            if mean is None or std is None:
                raise InputError(f"processor {self.processor!r} has no image_mean/image_std; pass them directly")
            self.image_mean, self.image_std = list(mean), list(std)
        return self.image_mean, self.image_std

    def collate_fn(self) -> ClassificationCollator:
        pad = 0
        if self.tokenizer_name is not None:
            from transformers import AutoTokenizer

            pad = AutoTokenizer.from_pretrained(self.tokenizer_name).pad_token_id or 0
        mean, std = self.image_statistics()
        size = None if self.dataset_name == "digits" else self.image_size  # digits stay 8 x 8
        return ClassificationCollator(pad, image_size=size, mean=mean, std=std)
