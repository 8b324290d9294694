"""A LoRA run's checkpoint holds the adapters and the optimizer state, not the frozen base: the base is named by
source and SHA-256, put back from the module's own copy on resume, and a checkpoint of another base is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from mcu_lightning.callbacks.checkpoint import CheckpointError
from mcu_lightning.data import QADataModule
from mcu_lightning.losses import GradDiff
from mcu_lightning.models import apply_lora, tiny_causal_lm
from mcu_lightning.models.hf import LoraSpec
from mcu_lightning.modules import FineTuneModule, UnlearningModule
from mcu_lightning.modules.finetune import FROZEN_BASE_KEY

LORA = LoraSpec(r=2, alpha=4, target_modules=["q_proj", "v_proj"])


def _base(folder: Path, seed: int) -> str:
    tiny_causal_lm(hidden_size=32, intermediate_size=64, num_hidden_layers=1, seed=seed).save_pretrained(folder)
    return str(folder)


def _fit(module, root: Path, steps: int, ckpt_path: str | None = None, finetune: str | None = None) -> Path:
    data = QADataModule(
        data="fictitious",
        forget_split="forget10",
        tokenizer="fictitious",
        max_length=32,
        batch_size=8,
        finetune_split=finetune,
    )
    checkpoint = ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, save_top_k=0)
    trainer = Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=str(root),
        callbacks=[checkpoint],
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return root / "checkpoints" / "last.ckpt"


def test_lora_checkpoints_carry_adapters_and_optimizer_state_only(tmp_path: Path) -> None:
    base = _base(tmp_path / "base", seed=0)
    seed_everything(0)
    module = UnlearningModule(base, GradDiff(), lora=LORA, output_dir=str(tmp_path / "run"), export=False)
    last = _fit(module, tmp_path / "run", steps=2)
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    saved = checkpoint["state_dict"]
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert set(saved) == trainable and all("lora_" in name for name in saved)
    record = checkpoint[FROZEN_BASE_KEY]
    assert record["source"] == base and len(record["sha256"]) == 64
    assert record["keys"] == sum(1 for _, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad)
    assert checkpoint["optimizer_states"][0]["state"], "the adapters' optimizer state is kept"

    seed_everything(0)  # resume on the same base: the frozen base is put back, training goes on
    resumed = UnlearningModule(base, GradDiff(), lora=LORA, output_dir=str(tmp_path / "run"), export=False)
    _fit(resumed, tmp_path / "run", steps=3, ckpt_path=str(last))
    assert resumed.trainer.global_step == 3

    other = UnlearningModule(_base(tmp_path / "other", seed=1), GradDiff(), lora=LORA, export=False)
    with pytest.raises(CheckpointError, match="frozen base"):
        other.on_load_checkpoint(torch.load(last, map_location="cpu", weights_only=False))


def test_a_full_weight_checkpoint_is_unchanged_and_finetune_with_lora_drops_the_base(tmp_path: Path) -> None:
    module = FineTuneModule(apply_lora(tiny_causal_lm(hidden_size=32, intermediate_size=64), LORA), export=False)
    saved = torch.load(
        _fit(module, tmp_path / "lora", steps=1, finetune="full"), map_location="cpu", weights_only=False
    )
    assert saved["state_dict"] and all("lora_" in name for name in saved["state_dict"])
    assert saved[FROZEN_BASE_KEY]["source"] == type(module.model).__name__

    full = FineTuneModule(tiny_causal_lm(hidden_size=32, intermediate_size=64), export=False)
    saved = torch.load(_fit(full, tmp_path / "full", steps=1, finetune="full"), map_location="cpu", weights_only=False)
    assert set(saved["state_dict"]) == set(full.state_dict()) and FROZEN_BASE_KEY not in saved
