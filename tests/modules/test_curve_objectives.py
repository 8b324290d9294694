"""Every loss ``mcu_lightning.losses`` exports, as a curve objective, through the whole loss lifecycle.

The losses are discovered from the package (a new one is covered without editing this file). For each, between two
tiny LM endpoints (and two tiny classifiers where the loss supports classification): at ``t = 0`` the curve's
objective equals the same loss on the first endpoint through ``UnlearningModule`` on the same batch and seed; a
3-step ``CurveModule`` fit through the Lightning Trainer moves the control points; SalUn moves only the masked
slices, RMU's curve holds only RMU's layers, SCRUB alternates its max/min steps over curve steps.
"""

from __future__ import annotations

import inspect
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything

import mcu_lightning.losses as losses
from mcu_lightning.data import ClassificationDataModule, QADataModule
from mcu_lightning.losses import PDU, RMU, SCRUB, GradDiff, SalUn, UnlearningLoss
from mcu_lightning.models import MLP, load_model, save_model, tiny_causal_lm
from mcu_lightning.modules import CurveModule, UnlearningModule

pytestmark = pytest.mark.slow

#: Every exported loss class (the base classes, which define no forward, aside), found in the package, not listed here.
LOSSES = sorted(
    (obj for name in losses.__all__ if isinstance(obj := getattr(losses, name), type)),
    key=lambda cls: cls.__name__,
)
LOSSES = [cls for cls in LOSSES if issubclass(cls, UnlearningLoss) and cls.forward is not UnlearningLoss.forward]

#: Options a test needs beyond the defaults: RMU on one layer's MLP (so "only its layers" means something), PDU's
#: retain-loss bound (required, as in open-unlearning).
OPTIONS: dict[type, dict[str, Any]] = {
    RMU: {"trainable": r"layers\.1\.mlp\.", "layer": r"layers\.1$"},
    PDU: {"retain_loss_eps": 0.5},
}
STEPS = 3


def make(cls: type) -> UnlearningLoss:
    """The loss with its defaults; a required wrapped loss (SuperLoss) is GradDiff."""
    kwargs = dict(OPTIONS.get(cls, {}))
    for name, param in inspect.signature(cls).parameters.items():
        required = param.default is inspect.Parameter.empty and param.kind is param.POSITIONAL_OR_KEYWORD
        if required and name not in kwargs:
            kwargs[name] = GradDiff()
    return cls(**kwargs)


def cases() -> list[Any]:
    out = []
    for cls in LOSSES:
        out.append(pytest.param(cls, "lm", id=f"{cls.__name__}-lm"))
        if make(cls).supports_classification:
            out.append(pytest.param(cls, "classifier", id=f"{cls.__name__}-classifier"))
    return out


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    """Per task: the data module (set up) and the first endpoint's folder."""
    root = tmp_path_factory.mktemp("objective_endpoints")
    lm_data = QADataModule(
        data="fictitious", forget_split="forget10", tokenizer="fictitious", max_length=48, batch_size=4,
        eval_batch_size=16,
    )  # fmt: skip
    lm_data.setup("fit")
    lm = tiny_causal_lm(tokenizer="fictitious", hidden_size=16, intermediate_size=32, num_hidden_layers=2)
    classifier_data = ClassificationDataModule(dataset="digits", image_size=8, batch_size=8, eval_batch_size=64)
    classifier_data.setup("fit")
    torch.manual_seed(0)
    classifier = MLP(in_features=64, num_classes=10, hidden=16, depth=2)
    return {
        "lm": (lm_data, save_model(lm, root / "lm0")),
        "classifier": (classifier_data, save_model(classifier, root / "classifier0")),
    }


def second_endpoint(first: Path, loss: UnlearningLoss, folder: Path) -> Path:
    """The first endpoint moved by seeded noise on the parameters the loss trains (the others agree, as two
    endpoints unlearned from one base by a loss with a parameter subset do)."""
    model = load_model(first)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if loss.is_trainable(name):
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return save_model(model, folder)


class StepLogs(Callback):
    def __init__(self) -> None:
        self.logs: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer: Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.logs.append({k: float(v) for k, v in module.step_logs.items()})


def test_every_exported_loss_is_discovered() -> None:
    names = {cls.__name__ for cls in LOSSES}
    expected = {"GradDiff", "NPO", "SalUn", "RMU", "SCRUB", "BadTeaching", "IdkDPO", "SuperLoss"}
    assert expected | {"UNDIAL", "CEU", "SatImp", "WGA", "PDU"} <= names, names


@pytest.mark.parametrize(("cls", "task"), cases())
def test_loss_as_curve_objective(cls: type, task: str, worlds: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    data, first = worlds[task]
    second = second_endpoint(first, make(cls), tmp_path / "second")
    adamw = partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.0)  # no decay: a zero gradient moves nothing
    batch = next(iter(data.train_dataloader()))
    forget = list(data.eval_dataloader("forget"))

    # t = 0: the curve's objective is the loss at the first endpoint, through UnlearningModule, same batch and seed
    values = []
    for build in (
        lambda: UnlearningModule(str(first), make(cls), optimizer=adamw),
        lambda: CurveModule([str(first), str(second)], objective=make(cls), reference=str(first), optimizer=adamw),
    ):
        seed_everything(0)
        module = build().train()
        module.lifecycle.bind(getattr(data, "tokenizer", None))
        module.start_loss(iter(forget))
        module.lifecycle.on_train_step(0)
        with torch.no_grad():
            out = module.objective_at(0.0, batch) if isinstance(module, CurveModule) else module.compute_loss(batch)
        values.append(out.loss.item())
    assert values[1] == pytest.approx(values[0], rel=1e-5, abs=1e-6), values

    # a 3-step fit moves the control points
    curve_module = module
    before = [point.detach().clone() for point in curve_module.curve.control_points]
    logs = StepLogs()
    trainer = Trainer(
        accelerator="cpu", devices=1, max_steps=STEPS, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        default_root_dir=str(tmp_path), callbacks=[logs],
    )  # fmt: skip
    trainer.fit(curve_module, datamodule=data)
    assert len(logs.logs) == STEPS and all(torch.isfinite(torch.tensor(log["train/loss"])) for log in logs.logs)
    after = [point.detach() for point in curve_module.curve.control_points]
    moved = [(a - b).abs().max().item() for a, b in zip(after, before, strict=True)]
    assert all(m > 0 for m in moved), f"{cls.__name__}: control points did not move ({moved})"

    curve, objective = curve_module.curve, curve_module.objective
    template_names = [name for name, _ in curve_module.template.named_parameters()]
    if isinstance(objective, SalUn):  # only the salient entries of each control point moved
        delta = {name: (a - b) for name, a, b in zip(curve.names, *_by_name(curve, before, after), strict=True)}
        assert set(objective.masks) == set(curve.names)
        for name, change in delta.items():
            mask = objective.masks[name]
            assert torch.all(change[~mask] == 0), f"SalUn moved unmasked entries of '{name}'"
        assert any(bool((change[objective.masks[name]] != 0).any()) for name, change in delta.items())
        assert 0 < sum(int(m.sum()) for m in objective.masks.values()) < sum(m.numel() for m in delta.values())
    if isinstance(objective, RMU):  # the curve holds RMU's layers only; every other tensor is endpoint 0's
        expected = [name for name in template_names if objective.is_trainable(name)]
        assert curve.names == expected and len(expected) < len(template_names)
        start = load_model(first).state_dict()
        for name, value in curve.params(0.5).items():
            if name not in expected:
                assert torch.equal(value, start[name]), name
    if isinstance(objective, SCRUB):  # max, min, max over the curve's steps (max_every=2)
        assert [log["train/phase"] for log in logs.logs] == [1.0, 0.0, 1.0]


def _by_name(curve: Any, before: list[torch.Tensor], after: list[torch.Tensor]) -> tuple[list, list]:
    """The first control point's tensors in ``curve.names`` order, before and after."""
    shapes = [tensor.shape for tensor in curve.control_point(0).values()]
    sizes = [shape.numel() for shape in shapes]
    return tuple([p.view(s) for p, s in zip(flat.split(sizes), shapes, strict=True)] for flat in (before[0], after[0]))
