"""DivergenceGuard: gradient ascent past a forget-NLL limit, a retain-loss blow-up and NaN weights each stop
the run with a reason and a ``divergence.json``, and ``last_good.ckpt`` holds exactly the last weights whose
loss passed the checks (restored into the module before it exports)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn

from mcu_lightning.callbacks import DivergenceGuard
from mcu_lightning.callbacks.guard import DIVERGENCE_JSON, LAST_GOOD, last_good_of
from mcu_lightning.data import ClassificationDataModule
from mcu_lightning.losses import GradAscent
from mcu_lightning.models.io import load_state_dict
from mcu_lightning.modules import UnlearningModule
from tests.reliability.helpers import mlp_endpoint


class Recorder(Callback):
    """Copies of the trainable weights at the start (key 0) and after every optimizer step k (key k)."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, Tensor]] = {}

    def _snapshot(self, trainer: Trainer, module: LightningModule) -> None:
        self.weights[trainer.global_step] = {n: p.detach().clone() for n, p in module.named_parameters()}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._snapshot(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._snapshot(trainer, pl_module)


def _trainer(tmp_path: Path, guard: DivergenceGuard, recorder: Recorder, steps: int = 30) -> Trainer:
    return Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
        callbacks=[recorder, guard],
    )


def _assert_weights(module: LightningModule, expected: dict[str, Tensor]) -> None:
    for name, value in module.named_parameters():
        assert torch.equal(value.detach(), expected[name]), name


@pytest.mark.slow
def test_gradient_ascent_stops_at_the_forget_nll_limit_and_exports_the_last_good_weights(tmp_path: Path) -> None:
    base = mlp_endpoint(tmp_path / "base", 0)
    module = UnlearningModule(
        str(base), GradAscent(), optimizer=lambda p: torch.optim.SGD(p, lr=0.5), output_dir=str(tmp_path / "run")
    )
    data = ClassificationDataModule(dataset="digits", image_size=8, forget_fraction=0.1, batch_size=32)
    guard, recorder = DivergenceGuard(max_forget_nll=8.0), Recorder()
    trainer = _trainer(tmp_path, guard, recorder)
    trainer.fit(module, datamodule=data)

    record = json.loads((tmp_path / "run" / DIVERGENCE_JSON).read_text())
    k = record["step"]
    assert guard.tripped and 2 <= k < 30 and trainer.global_step == k  # stopped right at the violation
    assert "train/forget_nll" in record["reasons"][0] and record["metrics"]["train/forget_nll"] > 8.0
    # step k's loss was computed on the weights after step k - 1: those are bad, the ones after k - 2 are good
    good = recorder.weights[k - 2]
    checkpoint = torch.load(last_good_of(tmp_path / "run" / DIVERGENCE_JSON), map_location="cpu", weights_only=False)
    for name, value in good.items():
        assert torch.equal(checkpoint["state_dict"][name], value), name
    _assert_weights(module, good)  # restored before on_fit_end's export
    exported = load_state_dict(tmp_path / "run" / "model")
    assert torch.equal(exported["net.1.weight"], good["model.net.1.weight"])
    assert not torch.equal(good["model.net.1.weight"], recorder.weights[k]["model.net.1.weight"])


class ToyModule(LightningModule):
    """A linear model whose loss can be steered per step, logging the keys the losses log."""

    def __init__(self, retain: dict[int, float] | None = None, poison_at: int | None = None) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.retain, self.poison_at = retain or {}, poison_at

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = self.layer(batch).pow(2).mean()
        if self.global_step + 1 == self.poison_at:  # a gradient of NaN: the weights after this step are NaN
            loss = loss * torch.tensor(math.nan)
        self.log("train/forget_nll", 1.0)
        self.log("train/retain_loss", self.retain.get(self.global_step + 1, 1.0))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(torch.randn(64, 4), batch_size=8)


def test_nan_weights_stop_the_run_and_the_weights_before_them_are_kept(tmp_path: Path) -> None:
    module = ToyModule(poison_at=4)  # step 4's loss is finite on the weights after step 3; its gradient is NaN
    guard, recorder = DivergenceGuard(), Recorder()
    _trainer(tmp_path, guard, recorder).fit(module)
    assert guard.step == 4 and guard.reason.startswith("non-finite weights in 2 parameter(s)")
    _assert_weights(module, recorder.weights[3])  # the last weights whose loss was finite
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert json.loads((tmp_path / DIVERGENCE_JSON).read_text())["step"] == 4


def test_retain_ratio_uses_the_first_retain_loss_as_baseline(tmp_path: Path) -> None:
    module = ToyModule(retain={1: 2.0, 2: 2.5, 3: 3.9, 4: 4.1, 5: 9.0})
    guard, recorder = DivergenceGuard(max_forget_nll=None, max_retain_ratio=2.0), Recorder()
    _trainer(tmp_path, guard, recorder).fit(module)
    assert guard.step == 4 and "4.1 > max_retain_ratio 2" in guard.reason
    assert (tmp_path / "checkpoints" / LAST_GOOD).is_file()
    _assert_weights(module, recorder.weights[2])


def test_divergence_json_names_last_good_relative_to_itself(tmp_path: Path) -> None:
    """The record stays right when the study folder moves: ``last_good`` is relative to ``divergence.json``'s folder."""
    run = tmp_path / "run"
    module = ToyModule(retain={1: 2.0, 2: 2.5, 3: 9.0})
    _trainer(run, DivergenceGuard(max_forget_nll=None, max_retain_ratio=2.0), Recorder()).fit(module)
    assert json.loads((run / DIVERGENCE_JSON).read_text())["last_good"] == f"checkpoints/{LAST_GOOD}"
    moved = run.rename(tmp_path / "moved")
    assert last_good_of(moved / DIVERGENCE_JSON) == moved / "checkpoints" / LAST_GOOD
    assert last_good_of(moved / DIVERGENCE_JSON).is_file()


def test_a_healthy_run_is_not_stopped(tmp_path: Path) -> None:
    guard, recorder = DivergenceGuard(max_retain_ratio=1.5), Recorder()
    trainer = _trainer(tmp_path, guard, recorder, steps=6)
    trainer.fit(ToyModule())
    assert not guard.tripped and trainer.global_step == 6 and not (tmp_path / DIVERGENCE_JSON).exists()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"max_retain_ratio=0\.5 must exceed 1"):
        DivergenceGuard(max_retain_ratio=0.5)
    with pytest.raises(ValueError, match="check_every_n_steps=0"):
        DivergenceGuard(check_every_n_steps=0)


class HalfFrozen(ToyModule):
    """A frozen 'base' layer next to the trained one, as a LoRA run has."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = nn.Linear(4, 4).requires_grad_(False)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return super().training_step(self.base(batch), batch_idx)


def test_the_last_good_copy_is_the_trainable_tensors_in_memory_and_only_a_trip_writes_it(tmp_path: Path) -> None:
    guard, recorder = DivergenceGuard(max_retain_ratio=1.5), Recorder()
    module = HalfFrozen()
    _trainer(tmp_path, guard, recorder, steps=6).fit(module)
    assert not guard.tripped and not list(tmp_path.rglob("*.ckpt"))  # no checkpoint written per step
    assert sorted(guard._last_good) == ["layer.bias", "layer.weight"]  # the frozen base is not copied
    for name, value in guard._last_good.items():  # the weights after step 5, promoted by step 6's loss
        assert torch.equal(value, recorder.weights[5][name]), name

    module, recorder = HalfFrozen(retain={1: 2.0, 2: 2.5, 3: 3.9, 4: 4.1}), Recorder()
    guard = DivergenceGuard(max_forget_nll=None, max_retain_ratio=2.0)
    _trainer(tmp_path / "trip", guard, recorder).fit(module)
    written = torch.load(tmp_path / "trip" / "checkpoints" / LAST_GOOD, weights_only=False)
    assert sorted(written["state_dict"]) == ["layer.bias", "layer.weight"] and written["global_step"] == 2
    _assert_weights(module, recorder.weights[2])
