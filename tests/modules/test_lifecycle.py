"""One loss lifecycle: every module calls every hook of its loss, in the same order, through one driver.

A recording loss trains a ``FineTuneModule``, an ``UnlearningModule`` and a ``CurveModule`` for two steps through the
Lightning Trainer on the embedded QA data; each sees bind, setup_model, attach, then on_train_step /
on_after_backward per step, with the arguments the hook's docstring promises for a plain model and for a curve.
No module file calls a loss hook itself (the driver, ``modules/lifecycle.py``, is the only caller), and the driver
calls each hook under the hook's own name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.data import QADataModule
from mcu_lightning.losses.base import LossOutput, NamedGradients, UnlearningLoss
from mcu_lightning.models import load_model, save_model, tiny_causal_lm
from mcu_lightning.modules import CurveModule, FineTuneModule, UnlearningModule

pytestmark = pytest.mark.slow

MODULES = Path(__file__).resolve().parents[2] / "mcu_lightning" / "modules"
HOOKS = ("bind", "is_trainable", "setup_model", "attach", "on_train_step", "on_after_backward")


class Recorder(UnlearningLoss):
    """NLL on the first sub-batch; records each hook call with what it received."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def forward(self, policy, batch, reference=None) -> LossOutput:
        sub = next(iter(batch.values()))
        return LossOutput(batch_nll(policy(sub), sub["labels"]))

    def is_trainable(self, name: str) -> bool:
        return "embed_tokens" not in name  # the embedding stays put (tied head included)

    def bind(self, tokenizer: Any) -> None:
        self.calls.append(("bind", tokenizer))

    def setup_model(self, model: nn.Module, forget_loader=None) -> None:
        grads = sorted(name for name, p in model.named_parameters() if p.requires_grad)
        self.calls.append(("setup_model", (model, grads, forget_loader is not None)))

    def attach(self, model: nn.Module, reference: nn.Module | None = None) -> None:
        self.calls.append(("attach", model))

    def on_train_step(self, step: int) -> None:
        self.calls.append(("on_train_step", step))

    def on_after_backward(self, gradients: NamedGradients) -> None:
        self.calls.append(("on_after_backward", [(name, tuple(grad.shape)) for name, grad in gradients]))


def _data(**kwargs: Any) -> QADataModule:
    return QADataModule(
        data="fictitious", forget_split="forget10", tokenizer="fictitious", max_length=48, batch_size=4, **kwargs
    )


def _fit(module: Any, data: QADataModule, root: Path) -> None:
    Trainer(
        accelerator="cpu", devices=1, max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=str(root),
    ).fit(module, datamodule=data)  # fmt: skip


def _names(calls: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in calls]


def _lm() -> nn.Module:
    return tiny_causal_lm(tokenizer="fictitious", hidden_size=16, intermediate_size=32, num_hidden_layers=1)


EXPECTED = ["bind", "setup_model", "attach", "on_train_step", "on_after_backward", "on_train_step", "on_after_backward"]


def test_plain_modules_drive_every_hook(tmp_path: Path) -> None:
    for module_of, data in (
        (lambda loss: FineTuneModule(_lm(), loss, export=False), _data(finetune_split="full")),
        (lambda loss: UnlearningModule(_lm(), loss, export=False), _data()),
    ):
        loss = Recorder()
        module = module_of(loss)
        _fit(module, data, tmp_path)
        calls = dict(loss.calls[:3])
        assert _names(loss.calls) == EXPECTED, type(module).__name__
        assert calls["bind"] is data.tokenizer
        model, grads, has_forget = calls["setup_model"]
        trained = sorted(name for name, p in module.model.named_parameters() if p.requires_grad)
        assert model is module.model and grads == trained and "model.embed_tokens.weight" not in trained
        assert has_forget  # the data module has a forget split: setup_model gets its batches
        assert calls["attach"] is module.model
        assert [step for name, step in loss.calls if name == "on_train_step"] == [0, 1]
        gradients = dict(loss.calls[4][1])
        assert gradients == {name: tuple(p.shape) for name, p in module.model.named_parameters() if p.requires_grad}


def test_curve_module_drives_every_hook_on_the_curve(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = save_model(_lm(), tmp_path / "a")
    moved = load_model(first)  # the second endpoint differs where the loss trains, agrees on the embedding
    with torch.no_grad():
        for name, param in moved.named_parameters():
            if "embed_tokens" not in name:
                param.add_(0.1)
    second = save_model(moved, tmp_path / "b")
    loss = Recorder()
    module = CurveModule([str(first), str(second)], objective=loss)
    _fit(module, _data(), tmp_path)
    assert _names(loss.calls) == EXPECTED
    calls = dict(loss.calls[:3])
    model, grads, has_forget = calls["setup_model"]
    assert model is module.template and has_forget
    assert grads == sorted(module.curve.names) and "model.embed_tokens.weight" not in grads  # is_trainable
    assert not any(p.requires_grad for p in module.template.parameters())  # frozen again after setup_model
    assert calls["attach"] is module.template
    shapes = {name: tuple(p.shape) for name, p in module.template.named_parameters() if name in module.curve.names}
    assert dict(loss.calls[4][1]) == shapes  # one slice per parameter on the curve (one control point)


def test_no_module_calls_a_loss_hook_itself() -> None:
    pattern = re.compile(r"\.(?:loss|objective)\.(" + "|".join(HOOKS) + r")\(")
    for path in sorted(MODULES.glob("*.py")):
        if path.name == "lifecycle.py":
            continue
        found = pattern.findall(path.read_text())
        assert not found, f"{path.name} calls loss hooks {found} itself; go through LossLifecycle"


def test_the_driver_calls_each_hook_by_its_own_name() -> None:
    from mcu_lightning.modules.lifecycle import LossLifecycle

    missing = [hook for hook in (*HOOKS, "set_compat") if not callable(getattr(LossLifecycle, hook, None))]
    assert not missing, f"LossLifecycle has no method for loss hook(s) {missing}"
