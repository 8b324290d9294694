"""What a training step does besides the loss: which ``self.log`` calls it makes, and no KV cache in its forwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from mcu_lightning.core.forward import kv_cache_off
from mcu_lightning.losses import NPO
from mcu_lightning.models import tiny_causal_lm
from mcu_lightning.modules import UnlearningModule


def batches(steps: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)

    def sub() -> dict:
        ids = torch.randint(0, 64, (2, 12), generator=generator)
        labels = ids.clone()
        labels[:, :4] = -100
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    return [{"forget": sub(), "retain": sub()} for _ in range(steps)]


def model() -> torch.nn.Module:
    return tiny_causal_lm(tokenizer=None, vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1)


class Spy(Callback):
    """Names passed to ``self.log`` per step, and ``config.use_cache`` seen by every forward of the two models."""

    def __init__(self) -> None:
        self.logged: list[list[str]] = []
        self.use_cache: list[bool] = []
        self.step_logs: list[set[str]] = []

    def on_fit_start(self, trainer: Trainer, module: Any) -> None:
        original = module.log
        self.current: list[str] = []

        def log(name: str, *args: Any, **kwargs: Any) -> None:
            self.current.append(name)
            original(name, *args, **kwargs)

        module.log = log
        for net in module.forward_models():
            net.register_forward_pre_hook(lambda m, args: self.use_cache.append(m.config.use_cache))

    def on_train_batch_end(self, trainer: Trainer, module: Any, *args: Any) -> None:
        self.logged.append(self.current)
        self.step_logs.append(set(module.step_logs))
        self.current = []


def fit(tmp_path: Path, steps: int, **trainer_args: Any) -> tuple[UnlearningModule, Spy]:
    module = UnlearningModule(model(), NPO(beta=0.1), export=False)
    spy = Spy()
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,
        "default_root_dir": str(tmp_path),
        "callbacks": [spy],
    }
    options.update(trainer_args)
    Trainer(**options).fit(module, train_dataloaders=DataLoader(batches(steps), batch_size=None))
    return module, spy


def test_parts_are_logged_on_logger_steps_only_and_every_step_is_kept(tmp_path: Path) -> None:
    _, spy = fit(tmp_path, 6, logger=CSVLogger(tmp_path), log_every_n_steps=3, enable_progress_bar=False)
    parts = {"train/loss", "train/forget_loss", "train/retain_loss"}
    assert all(parts <= names for names in spy.step_logs)  # DivergenceGuard reads every step
    logged = [set(names) for names in spy.logged]
    assert logged[2] >= parts and logged[5] >= parts  # steps 3 and 6: the logger writes
    assert logged[0] == logged[1] == logged[3] == logged[4] == set()  # no reader: no self.log cost
    metrics = (Path(tmp_path) / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 3 and "train/forget_loss" in metrics[0]  # header + steps 3 and 6


def test_the_progress_bar_gets_the_loss_every_step(tmp_path: Path) -> None:
    _, spy = fit(tmp_path, 4, logger=False, log_every_n_steps=50, enable_progress_bar=True)
    assert all("train/loss" in names for names in spy.logged)
    assert not any("train/forget_loss" in names for names in spy.logged[:-1])


def test_training_forwards_build_no_kv_cache_and_the_setting_comes_back(tmp_path: Path) -> None:
    module, spy = fit(tmp_path, 3, logger=False, enable_progress_bar=False)
    assert len(spy.use_cache) == 3 * 3  # forget, reference on forget, retain: per step
    assert not any(spy.use_cache)
    assert all(net.config.use_cache for net in module.forward_models())


def test_kv_cache_off_restores_on_error_and_leaves_other_models_alone() -> None:
    net, plain = model(), torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError), kv_cache_off(net, plain):
        assert net.config.use_cache is False
        assert net(input_ids=torch.tensor([[1, 2]])).past_key_values is None
        raise RuntimeError
    assert net.config.use_cache is True
    assert net(input_ids=torch.tensor([[1, 2]])).past_key_values is not None
