import json

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from mcu_lightning.data.classification import ClassificationDataModule, load_digits_parts, select_forget


def test_digits_parts():
    parts = load_digits_parts(test_fraction=0.2, seed=0)
    assert (len(parts.train), len(parts.test), parts.num_classes) == (1438, 359, 10)
    item = parts.train[0]
    assert item["inputs"].shape == (1, 8, 8) and item["inputs"].dtype == torch.float
    assert parts.train.inputs.min() >= 0.0 and parts.train.inputs.max() == 1.0
    train, test = set(parts.train.source_index.tolist()), set(parts.test.source_index.tolist())
    assert not train & test and len(train | test) == 1797


def test_forget_split_is_reproducible_and_disjoint():
    forget, retain = select_forget(100, 0.1, seed=4)
    assert len(forget) == 10 and len(retain) == 90
    assert not set(forget.tolist()) & set(retain.tolist())
    assert torch.equal(forget, select_forget(100, 0.1, seed=4)[0])
    assert not torch.equal(forget, select_forget(100, 0.1, seed=5)[0])
    assert len(select_forget(30, 0.01)[0]) == 1  # at least one sample


def test_datamodule_batches_and_sizes():
    dm = ClassificationDataModule(forget_fraction=0.1, batch_size=16)
    assert dm.num_classes == 10 and dm.task == "classification"
    dm.setup("fit")
    assert (len(dm.forget_dataset), len(dm.retain_dataset)) == (144, 1294)
    forget_rows = set(dm.forget_dataset.source_index.tolist())
    assert not forget_rows & set(dm.retain_dataset.source_index.tolist())
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"forget", "retain"}
    assert batch["forget"]["inputs"].shape == (16, 1, 8, 8) and batch["forget"]["labels"].dtype == torch.long
    assert set(batch["retain"]) == {"inputs", "labels", "index"}
    assert {name: len(dl.dataset) for name, dl in dm.test_dataloader().items()} == {
        "forget": 144,
        "retain": 1294,
        "test": 359,
    }  # the evaluation loaders by name, in eval_splits order
    ft = ClassificationDataModule(finetune_split="full", batch_size=64)
    ft.setup("fit")
    assert sum(len(b["train"]["labels"]) for b in ft.train_dataloader()) == 1438
    oracle = ClassificationDataModule(finetune_split="retain")
    oracle.setup("fit")
    assert len(oracle.finetune_dataset) == 1294


def test_index_file(tmp_path):
    path = tmp_path / "forget.json"
    path.write_text(json.dumps([3, 1, 2]))
    dm = ClassificationDataModule(forget_index_file=str(path))
    dm.setup("fit")
    assert dm.forget_dataset.source_index.tolist() == [1, 2, 3] and len(dm.retain_dataset) == 1435
    path.write_text("[]")
    with pytest.raises(ValueError, match="is empty"):
        ClassificationDataModule(forget_index_file=str(path)).setup("fit")
    path.write_text("[5000]")
    with pytest.raises(ValueError, match="outside"):
        ClassificationDataModule(forget_index_file=str(path)).setup("fit")


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_forget_fraction_outside_unit_interval_is_refused(fraction):
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\)"):
        ClassificationDataModule(forget_fraction=fraction)


def test_local_image_dataset(tmp_path):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)) for _ in range(20)]
    data = datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(20)]})
    data.save_to_disk(str(tmp_path / "tiny"))
    dm = ClassificationDataModule(dataset=str(tmp_path / "tiny"), image_size=4, forget_fraction=0.25, batch_size=4)
    assert dm.num_classes == 3
    dm.setup("fit")
    assert (len(dm.forget_dataset), len(dm.retain_dataset), len(dm.eval_datasets["test"])) == (4, 12, 4)
    batch = next(iter(dm.train_dataloader()))
    assert batch["forget"]["inputs"].shape == (4, 3, 4, 4)
    assert batch["forget"]["inputs"].min() >= 0.0 and batch["forget"]["inputs"].max() <= 1.0


def test_local_text_dataset(tmp_path):
    from mcu_lightning.data.qa.fictitious import build_fictitious_tokenizer

    texts = ["good film", "bad film", "good plot", "bad plot very bad"] * 3
    build_fictitious_tokenizer(texts).save_pretrained(str(tmp_path / "tok"))
    data = datasets.Dataset.from_dict({"text": texts, "label": [0, 1, 0, 1] * 3})
    data.save_to_disk(str(tmp_path / "text"))
    dm = ClassificationDataModule(
        dataset=str(tmp_path / "text"), tokenizer=str(tmp_path / "tok"), test_fraction=0.25, batch_size=8
    )
    dm.setup("fit")
    batch = next(iter(dm.eval_dataloader("retain")))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "index"}
    assert batch["input_ids"].shape[0] == 8 and batch["attention_mask"].sum() < batch["attention_mask"].numel()


def _save_images(folder, sizes, mode="RGB", n=20):
    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    images = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        images.append(Image.fromarray(pixels if channels == 3 else pixels[..., 0], mode=mode))
    datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(n)]}).save_to_disk(str(folder))


def test_images_are_kept_as_uint8_at_their_size_and_resized_per_batch(tmp_path):
    _save_images(tmp_path / "same", [(6, 6)])
    dm = ClassificationDataModule(dataset=str(tmp_path / "same"), image_size=12, forget_fraction=0.25, batch_size=4)
    dm.setup("fit")
    stored = dm.split("train").inputs
    assert stored.dtype == torch.uint8 and stored.shape[1:] == (3, 6, 6)  # 4x less than floats, no upscaled copy
    batch = next(iter(dm.eval_dataloader("test")))
    assert batch["inputs"].dtype == torch.float and batch["inputs"].shape[1:] == (3, 12, 12)
    assert batch["inputs"].min() >= 0.0 and batch["inputs"].max() <= 1.0
    _save_images(tmp_path / "mixed", [(6, 6), (5, 9)])  # sizes differ: resized once at load, so they stack
    mixed = ClassificationDataModule(dataset=str(tmp_path / "mixed"), image_size=4, forget_fraction=0.25)
    assert mixed.split("train").inputs.shape[1:] == (3, 4, 4)


def test_images_are_normalised_with_given_or_processor_statistics(tmp_path):
    from transformers import ViTImageProcessor

    _save_images(tmp_path / "imgs", [(4, 4)])
    plain = ClassificationDataModule(dataset=str(tmp_path / "imgs"), image_size=4, forget_fraction=0.25)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    given = ClassificationDataModule(
        dataset=str(tmp_path / "imgs"), image_size=4, forget_fraction=0.25, image_mean=mean, image_std=std
    )
    ViTImageProcessor(image_mean=mean, image_std=std).save_pretrained(str(tmp_path / "proc"))
    from_processor = ClassificationDataModule(
        dataset=str(tmp_path / "imgs"), image_size=4, forget_fraction=0.25, processor=str(tmp_path / "proc")
    )
    raw, normalised, again = (next(iter(m.eval_dataloader("test")))["inputs"] for m in (plain, given, from_processor))
    expected = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(normalised, expected) and torch.equal(normalised, again)
    with pytest.raises(ValueError, match="both image_mean and image_std"):
        ClassificationDataModule(dataset="digits", image_mean=[0.5])
    with pytest.raises(ValueError, match="either processor"):
        ClassificationDataModule(dataset="digits", processor="x", image_mean=[0.5], image_std=[0.5])
    grey = ClassificationDataModule(dataset="digits", image_mean=mean, image_std=std)
    with pytest.raises(ValueError, match="3 channels but the images have 1"):
        next(iter(grey.eval_dataloader("test")))
