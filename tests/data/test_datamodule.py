from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mcu_lightning.data.qa.datamodule import QADataModule
from mcu_lightning.data.qa.fictitious import build_fictitious_tokenizer, generate_fictitious, write_splits
from mcu_lightning.data.samplers import Curriculum, ForgetRetainSampler, LinearPacing

SAMPLE = Path(__file__).parents[1] / "fixtures" / "tofu_sample"  # in the repository: a fresh clone skips nothing
LM_KEYS = {"input_ids", "attention_mask", "labels", "index"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("mcu_cache"))


def _module(cache, **kwargs):
    kwargs = {"forget_split": "forget10", "num_people": 20, "batch_size": 4, "cache_dir": cache, **kwargs}
    return QADataModule(**kwargs)


def _pairs(dm, epoch):
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [(b["forget"]["index"].tolist(), b["retain"]["index"].tolist()) for b in loader]


def test_train_batches_pair_forget_with_retain(cache):
    dm = _module(cache)
    assert dm.task == "qa" and len(dm.tokenizer) < 1000  # available before setup
    dm.setup("fit")
    assert (len(dm.forget_dataset), len(dm.retain_dataset)) == (14, 126)  # 2 and 18 people, 7 questions each
    batches = list(dm.train_dataloader())
    assert len(batches) == 4  # ceil(14 / 4): epochs count over the forget set
    for batch in batches:
        assert set(batch) == {"forget", "retain"}
        assert set(batch["forget"]) == set(batch["retain"]) == LM_KEYS
        assert batch["forget"]["input_ids"].shape[0] == batch["retain"]["input_ids"].shape[0]
    seen = torch.cat([b["forget"]["index"] for b in batches])
    assert sorted(seen.tolist()) == list(range(14))
    # reproducible partners from the seed, new ones next epoch, distinct within an epoch (126 >= 14)
    assert _pairs(dm, 0) == _pairs(_setup(_module(cache)), 0)
    assert _pairs(dm, 0) != _pairs(dm, 1)
    partners = [r for _, rs in _pairs(dm, 0) for r in rs]
    assert len(set(partners)) == 14
    assert _pairs(dm, 0) != _pairs(_setup(_module(cache, seed=1)), 0)


def _setup(dm):
    dm.setup("fit")
    return dm


def test_without_retain_and_finetune_batches(cache):
    dm = _setup(_module(cache, use_retain=False))
    assert set(next(iter(dm.train_dataloader()))) == {"forget"}
    ft = _setup(_module(cache, finetune_split="full+world_facts"))
    batches = list(ft.train_dataloader())
    assert set(batches[0]) == {"train"} and set(batches[0]["train"]) == LM_KEYS
    assert sum(len(b["train"]["index"]) for b in batches) == 20 * 7 + 12
    oracle = _setup(_module(cache, finetune_split="retain"))  # alias of retain90
    assert len(oracle.finetune_dataset) == 18 * 7


def test_eval_loaders_follow_eval_splits(cache):
    dm = _setup(_module(cache, eval_batch_size=64))
    assert dm.eval_splits == ["forget", "retain", "holdout", "real_authors", "world_facts"]
    loaders = dm.val_dataloader()
    assert list(loaders) == dm.eval_splits and list(dm.test_dataloader()) == dm.eval_splits  # named, in order
    forget = next(iter(loaders["forget"]))
    assert forget["perturbed_input_ids"].shape[:2] == (14, 5) and "paraphrased_labels" in forget
    assert next(iter(loaders["holdout"]))["index"].tolist() == list(range(14))  # holdout10: 2 people
    assert next(iter(loaders["world_facts"]))["perturbed_input_ids"].shape[:2] == (12, 3)
    with pytest.raises(ValueError, match="unknown eval splits"):
        _module(cache, eval_splits=["forget", "valid"])


class FakeModule:
    """Stands in for the lead's LightningModule: the loss of a forget item is its index (easy = low)."""

    device = torch.device("cpu")
    training = True

    def __init__(self):
        self.calls = 0

    def eval(self):
        self.training = False

    def train(self):
        self.training = True

    def per_sample_loss(self, batch):
        assert not torch.is_grad_enabled() and not self.training
        self.calls += 1
        return batch["index"].float()


def test_curriculum_by_loss_uses_the_module(cache):
    dm = _module(cache, eval_batch_size=8, curriculum=Curriculum("loss", "easy_first", LinearPacing(0.25, 2)))
    fake = FakeModule()
    dm.trainer = SimpleNamespace(lightning_module=fake)
    dm.setup("fit")
    assert fake.calls == 2 and fake.training  # 14 items in eval batches of 8, train mode restored
    assert dm.forget_sampler.scores.tolist() == list(range(14))
    first = [i for b in dm.train_dataloader() for i in b["forget"]["index"].tolist()]
    assert len(first) == 14 and set(first) == {0, 1, 2, 3}  # ceil(0.25 * 14) easiest
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    assert sorted(i for b in loader for i in b["forget"]["index"].tolist()) == list(range(14))


def test_curriculum_by_loss_needs_a_module(cache):
    dm = _module(cache, curriculum=Curriculum("loss"))
    with pytest.raises(RuntimeError, match="per_sample_loss"):
        dm.setup("fit")
    by_length = _setup(_module(cache, curriculum=Curriculum("length", "hard_first")))
    assert len(by_length.forget_sampler) == 14


def test_overlapping_forget_and_retain_are_refused(cache, tmp_path):
    splits = generate_fictitious(0, 20)
    splits["retain90"] = splits["retain90"] + splits["forget10"][:1]
    write_splits(splits, tmp_path)
    build_fictitious_tokenizer(tmp_path).save_pretrained(str(tmp_path / "tokenizer"))
    dm = QADataModule(data="tofu", data_root=str(tmp_path), tokenizer=str(tmp_path / "tokenizer"))
    with pytest.raises(ValueError, match=r"1 question\(s\) of forget split 'forget10' also appear in retain"):
        dm.setup("fit")


def test_empty_forget_is_refused(tmp_path):
    splits = generate_fictitious(0, 20)
    splits["forget05"] = []
    write_splits(splits, tmp_path)
    (tmp_path / "forget05.json").write_text("")
    build_fictitious_tokenizer(tmp_path).save_pretrained(str(tmp_path / "tokenizer"))
    tokenizer = str(tmp_path / "tokenizer")
    dm = QADataModule(data="tofu", forget_split="forget05", data_root=str(tmp_path), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="empty"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="the forget set is empty"):
        ForgetRetainSampler(0, 5)


def test_bad_arguments(cache):
    with pytest.raises(ValueError, match="needs tokenizer"):
        QADataModule(data="tofu")
    with pytest.raises(ValueError, match="unknown TOFU config 'forget15'"):
        QADataModule(forget_split="forget15", cache_dir=cache)
    with pytest.raises(ValueError, match="data='hub'"):
        QADataModule(data="hub")


def test_tofu_sample_through_the_module(tmp_path):
    build_fictitious_tokenizer(SAMPLE).save_pretrained(str(tmp_path))
    dm = QADataModule(data="tofu", forget_split="forget01", data_root=str(SAMPLE), tokenizer=str(tmp_path))
    dm.setup("fit")
    assert (len(dm.forget_dataset), len(dm.retain_dataset)) == (10, 40)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch["forget"]) == LM_KEYS
    sizes = {split: len(ds) for split, ds in dm.eval_datasets.items()}
    assert sizes == {"forget": 10, "retain": 10, "holdout": 10, "real_authors": 10, "world_facts": 10}
    missing = QADataModule(data="tofu", forget_split="forget05", data_root=str(SAMPLE), tokenizer=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"forget05\.json"):
        missing.setup("fit")


def test_max_rows_caps_every_config_but_the_forget_split(tmp_path):
    build_fictitious_tokenizer(SAMPLE).save_pretrained(str(tmp_path))
    options = {"data": "tofu", "forget_split": "forget01", "data_root": str(SAMPLE), "tokenizer": str(tmp_path)}
    dm = QADataModule(**options, max_rows=4)
    dm.setup("fit")
    assert (len(dm.forget_dataset), len(dm.retain_dataset)) == (10, 4)
    sizes = {split: len(ds) for split, ds in dm.eval_datasets.items()}
    assert sizes == {"forget": 10, "retain": 4, "holdout": 4, "real_authors": 4, "world_facts": 4}
    assert len(dm.load_finetune("forget+retain")) == 14 and len(dm.load_finetune("full")) == 4
    assert dm.retain_dataset.rows[0] == dm.load("retain99")[0]  # the first rows, in file order
    with pytest.raises(ValueError, match="max_rows=0"):
        QADataModule(**options, max_rows=0)


def test_lightning_distributed_injection_shards_the_pairs(cache):
    """The path Lightning takes under strategy='ddp': its DistributedSamplerWrapper around our sampler."""
    from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader

    dm = _setup(_module(cache))
    loader = dm.train_dataloader()
    single = {pair for f, r in _pairs(dm, 1) for pair in zip(f, r, strict=True)}
    shards = []
    for rank in (0, 1):
        sampler = _get_distributed_sampler(
            loader, shuffle=False, mode=RunningStage.TRAINING, overfit_batches=0, num_replicas=2, rank=rank
        )
        sampler.set_epoch(1)  # forwarded to ForgetRetainSampler
        ranked = _update_dataloader(loader, sampler, mode=RunningStage.TRAINING)
        pairs = [zip(b["forget"]["index"].tolist(), b["retain"]["index"].tolist(), strict=True) for b in ranked]
        shards.append({pair for batch_pairs in pairs for pair in batch_pairs})
    assert len(shards[0]) == len(shards[1]) == 7 and not shards[0] & shards[1]
    assert shards[0] | shards[1] == single  # same pairs as one process draws at that epoch
