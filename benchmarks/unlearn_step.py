"""Tokens per second of ``UnlearningModule`` steps through Lightning's ``Trainer`` vs a minimal PyTorch loop.

Both run the same computation on the same model and batches: the loss object (``GradDiff``; ``NPO`` with its frozen
reference), backward, AdamW step, ``zero_grad``. The hand loop is what one would write without Lightning (iterate
the loader, call the loss, step). Throughput counts the attention-mask tokens of the forget and retain sub-batches
over the timed steps (after ``--warmup`` steps), rounds alternate Trainer / loop, medians over rounds.
Target: Trainer/loop throughput >= 0.95.

    python -m benchmarks.unlearn_step
    python -m benchmarks.unlearn_step --device cuda --batch-size 16 --seq-len 512 --hidden-size 512 --layers 8
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer
from torch import nn
from torch.utils.data import DataLoader

from benchmarks._common import lm_batch, median, parser, setup, synchronize, write_json
from mcu_lightning.losses import NPO, GradDiff
from mcu_lightning.models import as_policy, call_model, tiny_causal_lm
from mcu_lightning.modules import UnlearningModule


class StepClock(Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer: Trainer, module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            synchronize(self.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        synchronize(self.device)
        self.end = time.perf_counter()


def batches(args: Any, device: torch.device) -> list[dict]:
    """``{"forget", "retain"}`` batches of random tokens (kept on the CPU; both paths move them to ``device``)."""
    cpu = torch.device("cpu")
    return [
        {
            "forget": lm_batch(args.vocab_size, args.batch_size, args.seq_len, cpu, seed=2 * i),
            "retain": lm_batch(args.vocab_size, args.batch_size, args.seq_len, cpu, seed=2 * i + 1),
        }
        for i in range(args.warmup + args.steps)
    ]


def tokens(data: list[dict], warmup: int) -> int:
    return int(sum(sub["attention_mask"].sum() for batch in data[warmup:] for sub in batch.values()))


def run_trainer(model: nn.Module, loss: nn.Module, data: list[dict], warmup: int, device: torch.device) -> float:
    module = UnlearningModule(copy.deepcopy(model), loss=copy.deepcopy(loss), export=False)
    clock = StepClock(warmup, device)
    trainer = Trainer(
        accelerator=device.type,
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[clock],
    )
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))
    return clock.end - clock.start


def run_loop(model: nn.Module, loss: nn.Module, data: list[dict], warmup: int, device: torch.device) -> float:
    model = copy.deepcopy(model).to(device).train()
    loss = copy.deepcopy(loss)
    reference = copy.deepcopy(model).requires_grad_(False).eval() if loss.needs_reference else None

    def reference_policy(batch: dict) -> torch.Tensor:
        with torch.no_grad():
            return call_model(reference, batch)

    optimizer = torch.optim.AdamW(model.parameters())
    start = 0.0
    for index, batch in enumerate(DataLoader(data, batch_size=None)):
        if index == warmup:
            synchronize(device)
            start = time.perf_counter()
        batch = {name: {k: v.to(device) for k, v in sub.items()} for name, sub in batch.items()}
        out = loss(as_policy(model), batch, reference_policy if reference is not None else None)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("unlearn_step", __doc__.splitlines()[0])
    p.set_defaults(repeats=3, warmup=3)
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    args = p.parse_args(argv)
    device = setup(args)
    model = tiny_causal_lm(
        tokenizer=None, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
        intermediate_size=2 * args.hidden_size, num_hidden_layers=args.layers,
        max_position_embeddings=max(128, args.seq_len),
    )  # fmt: skip
    data = batches(args, device)
    count = tokens(data, args.warmup)
    rows = []
    for name, loss in (("GradDiff", GradDiff(alpha=1.0)), ("NPO", NPO(beta=0.1))):
        seconds: dict[str, list[float]] = {"trainer": [], "loop": []}
        for _ in range(args.repeats):  # alternate: drift on a shared machine hits both alike
            seconds["trainer"].append(run_trainer(model, loss, data, args.warmup, device))
            seconds["loop"].append(run_loop(model, loss, data, args.warmup, device))
        trainer_tps, loop_tps = count / median(seconds["trainer"]), count / median(seconds["loop"])
        ratio = trainer_tps / loop_tps
        print(
            f"unlearn_step {name}: Trainer/loop tokens/s ratio {ratio:.3f}  (Trainer {trainer_tps:,.0f} tok/s, "
            f"loop {loop_tps:,.0f} tok/s; {args.steps} steps of {args.batch_size}x{args.seq_len} forget+retain; "
            "target >= 0.95)"
        )
        rows.append(
            {
                "case": f"{name} batch {args.batch_size} seq {args.seq_len}",
                "loss": name,
                "trainer_tokens_per_s": trainer_tps,
                "loop_tokens_per_s": loop_tps,
                "ratio": ratio,
                "target": 0.95,
                "meets_target": ratio >= 0.95,
            }
        )
    write_json(args.out, "unlearn_step", device, args, rows)
    return rows


if __name__ == "__main__":
    main()
