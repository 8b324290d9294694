"""LoRA end to end from the CLI: two UnlearningModule runs with LoRA export adapter folders, and a CurveModule
connects them in LoRA space on the shared base; unsupported combinations are refused with a clear error."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from mcu_lightning.cli import main
from mcu_lightning.models import save_model, tiny_causal_lm
from mcu_lightning.modules import CurveModule

DATA = {
    "class_path": "mcu_lightning.data.QADataModule",
    "init_args": {
        "tokenizer": "fictitious",
        "batch_size": 4,
        "eval_batch_size": 16,
        "max_length": 48,
        "eval_splits": ["forget", "retain", "holdout"],
    },
}
TRAINER = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "limit_val_batches": 0,
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tiny_causal_lm(tokenizer="fictitious", hidden_size=32, intermediate_size=64, seed=0)
    return save_model(model, tmp_path_factory.mktemp("lora_base") / "base")


def unlearn_with_lora(base: Path, out: Path, seed: int) -> Path:
    config = {
        "seed_everything": seed,
        "trainer": {**TRAINER, "max_steps": 3, "default_root_dir": str(out)},
        "model": {
            "class_path": "mcu_lightning.modules.UnlearningModule",
            "init_args": {
                "model": str(base),
                "loss": {"class_path": "mcu_lightning.losses.GradDiff"},
                "lora": {"r": 2, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.05}},
                "output_dir": str(out),
            },
        },
        "data": {**DATA, "init_args": {**DATA["init_args"], "seed": seed}},
    }
    path = out / "unlearn.yaml"
    out.mkdir(parents=True)
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    return out / "model"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory, base: Path) -> list[Path]:
    root = tmp_path_factory.mktemp("lora_endpoints")
    return [unlearn_with_lora(base, root / f"end{seed}", seed) for seed in (0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("space", "from_base"), [("factors", False), ("delta", False), ("delta", True)], ids=["factors", "delta", "base"]
)
def test_lora_endpoints_connect_from_the_cli(
    tmp_path: Path, base: Path, adapters: list[Path], space: str, from_base: bool
) -> None:
    """Two LoRA endpoints, or the base itself (the zero adapter) and one, connect in LoRA space."""
    for folder in adapters:
        assert (folder / "adapter_config.json").is_file(), "a LoRA endpoint exports an adapter folder"
    base_bytes = (base / "model.safetensors").read_bytes()
    ends = [base, adapters[0]] if from_base else adapters
    config = {
        "seed_everything": 0,
        "trainer": {**TRAINER, "max_steps": 3, "default_root_dir": str(tmp_path / "curve")},
        "model": {
            "class_path": "mcu_lightning.modules.CurveModule",
            "init_args": {
                "endpoints": [str(a) for a in ends],
                "base": str(base),
                "space": space,
                "eval_ts": 3,
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
                "suite": {"class_path": "mcu_lightning.metrics.QASuite", "init_args": {"max_new_tokens": 4}},
                "output_dir": str(tmp_path / "curve"),
            },
        },
        "data": DATA,
    }
    path = tmp_path / "curve.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    main(["test", "--config", str(path)])
    rows = (tmp_path / "curve" / "curve_metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and "forget/loss" in rows[0]
    assert (base / "model.safetensors").read_bytes() == base_bytes, "the base model must only be read"


def test_lora_endpoints_need_the_base(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="`base:` must name the base model"):
        CurveModule(endpoints=[str(tmp_path / "a"), str(tmp_path / "b")])


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("refuse")
    models = [
        tiny_causal_lm(tokenizer=None, vocab_size=32, hidden_size=16, intermediate_size=32, seed=i) for i in (0, 1)
    ]
    return [str(save_model(model, root / f"e{i}")) for i, model in enumerate(models)]


@pytest.mark.parametrize(
    ("strategy", "precision", "message"),
    [
        ("FSDPStrategy", "32-true", "does not support sharded control points"),
        ("DDPStrategy", "bf16-true", "would cast the fp32 control points"),
    ],
)
def test_unsupported_combinations_are_refused(endpoints: list[str], strategy: str, precision: str, message: str):
    """Sharded control points (FSDP) and fully-half precision are refused before training, not run wrongly."""
    from lightning.pytorch import strategies

    module = CurveModule(endpoints=endpoints)
    strategy_obj = getattr(strategies, strategy).__new__(getattr(strategies, strategy))
    module._trainer = SimpleNamespace(strategy=strategy_obj, precision=precision, datamodule=None)
    with pytest.raises(ValueError, match=message):
        module.setup("fit")


def test_curve_checkpoint_holds_control_points_not_the_model(tmp_path: Path, endpoints: list[str]) -> None:
    """A CurveModule checkpoint keeps the control points and drops the working copy; loading restores both."""
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    def retain_batch(seed: int) -> dict:
        ids = torch.randint(0, 32, (4, 10), generator=torch.Generator().manual_seed(seed))
        return {"retain": {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}}

    module = CurveModule(endpoints=endpoints)
    trainer = Trainer(**{**TRAINER, "max_steps": 2, "default_root_dir": str(tmp_path)})
    trainer.fit(module, train_dataloaders=DataLoader([retain_batch(0), retain_batch(1)], batch_size=None))
    trainer.save_checkpoint(tmp_path / "curve.ckpt")
    saved = torch.load(tmp_path / "curve.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert set(saved) == {"curve.control_points.0"}, "the working copy must not be saved"
    initial = CurveModule(endpoints=endpoints).curve.control_points[0]
    assert not torch.equal(module.curve.control_points[0], initial), "the fit changed nothing"
    restored = CurveModule.load_from_checkpoint(tmp_path / "curve.ckpt")
    assert torch.equal(restored.curve.control_points[0], module.curve.control_points[0])
    pairs = zip(restored.template.state_dict().values(), module.template.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
