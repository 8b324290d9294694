"""Seconds that evaluation during unlearning adds per epoch, on the quickstart's GradDiff endpoint.

The quickstart's settings: its base model architecture (a tiny Llama, hidden 64, 2 layers, fictitious vocabulary; an
untrained one, the cost does not depend on the weights), its data (forget10 of the fictitious facts, batch 16, eval
batch 64, max_length 48), its QASuite (16 new tokens) and GradDiff with AdamW at 1e-3. One ``fit`` with
``EvaluateDuringTraining(every_n_epochs=1)`` times, per epoch, the training part (epoch start to epoch end, the
evaluation excluded) and the evaluation (the callback's ``evaluate``); epochs before ``--warmup`` are dropped. The
figure is the median over epochs of evaluation / training seconds, each pair from the same epoch.

    python -m benchmarks.during_training
    python -m benchmarks.during_training --epochs 4 --no-rouge
"""

from __future__ import annotations

import tempfile
import time
import warnings
from functools import partial
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from benchmarks._common import median, paired_ratio, parser, setup, write_json
from mcu_lightning.callbacks import EvaluateDuringTraining
from mcu_lightning.data import QADataModule
from mcu_lightning.losses import GradDiff
from mcu_lightning.metrics import QASuite
from mcu_lightning.models import tiny_causal_lm
from mcu_lightning.modules import UnlearningModule


class TimedEvaluation(EvaluateDuringTraining):
    """The callback, with the wall time of each ``evaluate`` recorded."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds: list[float] = []

    def evaluate(self, trainer: Trainer, pl_module: Any) -> dict[str, Any]:
        start = time.perf_counter()
        entry = super().evaluate(trainer, pl_module)
        self.seconds.append(time.perf_counter() - start)
        return entry


class EpochTimer(Callback):
    """Training seconds per epoch: epoch start to the end of its last batch (before epoch-end callbacks)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: Any) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("during_training", __doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6, help="training epochs (the quickstart's GradDiff runs 6)")
    p.add_argument("--no-rouge", action="store_true", help="a cheap suite: no generation")
    args = p.parse_args(argv)
    device = setup(args)
    seed_everything(0)
    model = tiny_causal_lm(tokenizer="fictitious", hidden_size=64, intermediate_size=128, num_hidden_layers=2)
    suite = QASuite(max_new_tokens=16, rouge=not args.no_rouge)
    during = TimedEvaluation(score={"forget/loss": 1.0, "retain/loss": -1.0}, every_n_epochs=1)
    module = UnlearningModule(
        model, GradDiff(alpha=1.0), optimizer=partial(torch.optim.AdamW, lr=1e-3), suite=suite,
        during_training=during, export=False, output_dir=tempfile.mkdtemp(prefix="during_training-"),
    )  # fmt: skip
    data = QADataModule(forget_split="forget10", max_length=48, batch_size=16, eval_batch_size=64)
    timer = EpochTimer()
    trainer = Trainer(
        accelerator=device.type, max_epochs=args.epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no oracle: forget quality and privleak are NaN
        trainer.fit(module, datamodule=data)
    train, evaluation = timer.seconds[args.warmup :], during.seconds[args.warmup :]
    ratio = paired_ratio(evaluation, train)
    print(
        f"evaluation during training: +{median(evaluation):.3f} s per epoch on a {median(train):.3f} s epoch "
        f"(ratio {ratio:.2f}; suite {'without' if args.no_rouge else 'with'} ROUGE, {len(train)} epochs)"
    )
    rows = [{"rouge": not args.no_rouge, "train_s": train, "eval_s": evaluation, "ratio": ratio}]
    write_json(args.out, "during_training", device, args, rows)
    return rows


if __name__ == "__main__":
    main()
