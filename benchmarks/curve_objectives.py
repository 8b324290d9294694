"""Every exported unlearning loss as a curve objective: its value along the curve after 3 steps, and what a curve step
with it costs against an endpoint step with it.

For each loss class ``mcu_lightning.losses`` exports (discovered, defaults; a wrapped loss is GradDiff), on the
embedded fictitious QA data and a tiny causal LM: endpoint 0 is the LM, endpoint 1 the LM moved by seeded noise on
the parameters the loss trains. A ``CurveModule`` (Bezier(3), linear init, the loss as objective, endpoint 0 as
reference) runs the whole loss lifecycle (bind, setup_model, attach) and 3 training steps at uniform t, each through
the module's own hooks (``on_train_step`` before, ``on_after_backward`` after the backward); the objective is then
printed at t = 0, 0.5 and 1 on one fixed batch (eval mode, the step counter at 3). The timing compares one curve step
(draw t, objective at theta(t), backward, gradient hooks, AdamW step) with one ``UnlearningModule`` step with the same
loss from endpoint 0 (loss, backward, gradient hooks, AdamW step), interleaved; no target, the ratio is reported.

    python -m benchmarks.curve_objectives                 # CPU, about a minute on 2 cores
    python -m benchmarks.curve_objectives --losses SalUn,RMU --hidden-size 64 --device cuda
"""

from __future__ import annotations

import inspect
import itertools
import tempfile
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch

import mcu_lightning.losses as losses
from benchmarks._common import interleaved, median, paired_ratio, parser, ratio_line, setup, write_json
from mcu_lightning.data import QADataModule
from mcu_lightning.losses import GradDiff, UnlearningLoss
from mcu_lightning.models import load_model, save_model, tiny_causal_lm
from mcu_lightning.modules import CurveModule, UnlearningModule

TS = (0.0, 0.5, 1.0)
VALUE_KEYS = ("objective_t0", "objective_t05", "objective_t1")
FIT_STEPS = 3


def exported_losses() -> list[type]:
    """Every ``UnlearningLoss`` subclass in ``mcu_lightning.losses.__all__``, by name."""
    found = (getattr(losses, name) for name in losses.__all__)
    classes = [obj for obj in found if isinstance(obj, type) and issubclass(obj, UnlearningLoss)]
    return sorted((cls for cls in classes if cls is not UnlearningLoss), key=lambda cls: cls.__name__)


def make(cls: type) -> UnlearningLoss:
    """The loss with its defaults; a required wrapped loss (SuperLoss) is GradDiff."""
    kwargs = {}
    for name, param in inspect.signature(cls).parameters.items():
        if param.default is inspect.Parameter.empty and param.kind is param.POSITIONAL_OR_KEYWORD:
            kwargs[name] = GradDiff()
    return cls(**kwargs)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch.to(device) if isinstance(batch, torch.Tensor) else batch


class Stepper:
    """One module's training steps through its loss lifecycle, without a Trainer (the step counter is ours)."""

    def __init__(self, module: Any, loss_of: Callable[[Any], torch.Tensor]) -> None:
        self.module, self.loss_of, self.step_count = module, loss_of, 0
        self.optimizer = module.configure_optimizers()

    def step(self, batch: Any) -> None:
        self.module.lifecycle.on_train_step(self.step_count)
        self.loss_of(batch).backward()
        self.module.on_after_backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1


def build(cls: type, first: Path, second: Path, data: QADataModule, device: torch.device, lr: float) -> tuple:
    adamw = partial(torch.optim.AdamW, lr=lr, weight_decay=0.0)
    forget = [to_device(batch, device) for batch in data.eval_dataloader("forget")]
    curve = CurveModule([str(first), str(second)], objective=make(cls), reference=str(first), optimizer=adamw)
    endpoint = UnlearningModule(str(first), make(cls), optimizer=adamw)
    for module in (curve, endpoint):
        module.to(device).train()
        module.lifecycle.bind(data.tokenizer)
        module.start_loss(iter(forget))
    return curve, endpoint


def measure(
    cls: type, first: Path, folder: Path, data: QADataModule, batches: list, device: torch.device, args: Any
) -> dict[str, Any]:
    """The objective at each of ``TS`` after ``FIT_STEPS`` curve steps, and the curve/endpoint step times."""
    model, loss = load_model(first), make(cls)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # endpoint 1: endpoint 0 moved where the loss trains (the rest agrees, as it must)
        for name, param in model.named_parameters():
            if loss.is_trainable(name):
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    second = save_model(model, folder / f"endpoint1-{cls.__name__}")
    torch.manual_seed(0)
    curve, endpoint = build(cls, first, second, data, device, args.lr)
    stream: Iterator[Any] = itertools.cycle(batches)
    curve_steps = Stepper(curve, lambda b: curve.objective_at(curve.sample_t(0), b).loss)
    endpoint_steps = Stepper(endpoint, lambda b: endpoint.compute_loss(b).loss)
    for _ in range(FIT_STEPS):
        curve_steps.step(next(stream))
    curve.eval()  # no SuperLoss threshold update while reading the values
    curve.lifecycle.on_train_step(FIT_STEPS)
    with torch.no_grad():
        values = [curve.objective_at(t, batches[0]).loss.item() for t in TS]
    curve.train()
    variants = {"curve": lambda: curve_steps.step(next(stream)), "endpoint": lambda: endpoint_steps.step(next(stream))}
    times = interleaved(variants, args.repeats, args.warmup, device)
    return {
        "case": cls.__name__,
        **dict(zip(VALUE_KEYS, values, strict=True)),
        "curve_ms": median(times["curve"]) * 1e3,
        "endpoint_ms": median(times["endpoint"]) * 1e3,
        "ratio": paired_ratio(times["curve"], times["endpoint"]),
        "on_curve": curve.curve.control_points[0].numel(),
        "params": sum(p.numel() for p in model.parameters()),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("curve_objectives", __doc__.splitlines()[0])
    p.set_defaults(repeats=10, warmup=2)
    p.add_argument("--losses", default="", help="comma-separated class names (default: every exported loss)")
    p.add_argument("--hidden-size", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    device = setup(args)
    wanted = [name for name in args.losses.split(",") if name]
    classes = [cls for cls in exported_losses() if not wanted or cls.__name__ in wanted]
    unknown = set(wanted) - {cls.__name__ for cls in classes}
    if unknown:
        raise SystemExit(f"--losses names {sorted(unknown)}, not exported by mcu_lightning.losses")
    data = QADataModule(
        data="fictitious", forget_split="forget10", tokenizer="fictitious", max_length=48,
        batch_size=args.batch_size, eval_batch_size=32,
    )  # fmt: skip
    data.setup("fit")
    batches = [to_device(batch, device) for batch in itertools.islice(data.train_dataloader(), 8)]
    lm = tiny_causal_lm(
        tokenizer="fictitious",
        hidden_size=args.hidden_size,
        intermediate_size=2 * args.hidden_size,
        num_hidden_layers=args.layers,
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        first = save_model(lm, Path(folder) / "endpoint0")
        for cls in classes:
            rows.append(measure(cls, first, Path(folder), data, batches, device, args))
            row = rows[-1]
            at = ", ".join(f"t={t:g} {row[key]:.4f}" for t, key in zip(TS, VALUE_KEYS, strict=True))
            print(f"curve_objectives {cls.__name__}: objective after {FIT_STEPS} steps at {at}")
            label = f"curve_objectives {cls.__name__}: curve/endpoint step"
            print(ratio_line(label, row["curve_ms"] / 1e3, row["endpoint_ms"] / 1e3, "reported", ratio=row["ratio"]))
    write_json(args.out, "curve_objectives", device, args, rows)
    return rows


if __name__ == "__main__":
    main()
