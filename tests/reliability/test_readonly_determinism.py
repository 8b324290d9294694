"""Endpoints and base models are only read; the same config and seed give the same metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch import Trainer, seed_everything

from mcu_lightning.data import ClassificationDataModule
from mcu_lightning.losses import NLL, NPO, GradDiff
from mcu_lightning.metrics import ClassificationSuite
from mcu_lightning.modules import CurveModule, UnlearningModule
from tests.reliability.helpers import mlp_endpoint, tree_hashes


def _trainer(root: Path, steps: int) -> Trainer:
    return Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        default_root_dir=str(root),
    )


def _data(seed: int = 0) -> ClassificationDataModule:
    return ClassificationDataModule(dataset="digits", image_size=8, forget_fraction=0.1, batch_size=32, seed=seed)


@pytest.mark.slow
def test_unlearning_and_curve_fits_never_write_their_inputs(tmp_path: Path) -> None:
    base, a, b = (mlp_endpoint(tmp_path / name, seed) for name, seed in (("base", 0), ("a", 1), ("b", 2)))
    before = {**tree_hashes(base), **tree_hashes(a), **tree_hashes(b)}
    unlearn = UnlearningModule(str(base), NPO(), output_dir=str(tmp_path / "unlearn"))  # loads a reference too
    _trainer(tmp_path / "u", 3).fit(unlearn, datamodule=_data())
    curve = CurveModule(
        [str(a), str(b)],
        init=str(base),
        objective=NLL(split="retain"),
        eval_ts=3,
        suite=ClassificationSuite(),
        output_dir=str(tmp_path / "curve"),
    )
    trainer = _trainer(tmp_path / "c", 3)
    trainer.fit(curve, datamodule=_data())
    trainer.test(curve, datamodule=_data(), verbose=False)
    after = {**tree_hashes(base), **tree_hashes(a), **tree_hashes(b)}
    assert after == before and len(before) == 6  # mcu_model.json + model.safetensors each
    assert (tmp_path / "unlearn" / "model" / "model.safetensors").is_file()  # the run did write its own output
    assert (tmp_path / "curve" / "curve_metrics.csv").is_file()


def _unlearn_and_test(root: Path, base: Path) -> dict[str, float]:
    seed_everything(7, workers=True)
    module = UnlearningModule(str(base), GradDiff(), suite=ClassificationSuite(), output_dir=str(root), export=False)
    trainer = _trainer(root, 6)  # more than one epoch: epoch-seeded order and partners are exercised
    trainer.fit(module, datamodule=_data(seed=7))
    trainer.test(module, datamodule=_data(seed=7), verbose=False)
    return json.loads((root / "test_metrics.json").read_text())["aggregates"]


@pytest.mark.slow
def test_same_config_and_seed_give_identical_metrics(tmp_path: Path) -> None:
    base = mlp_endpoint(tmp_path / "base", 0)
    first, second = _unlearn_and_test(tmp_path / "one", base), _unlearn_and_test(tmp_path / "two", base)
    assert first == second and "forget/acc" in first
