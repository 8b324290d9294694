"""Tokens per second of ``UnlearningModule`` steps through Lightning's ``Trainer`` vs a minimal PyTorch loop.

Both run the same computation on the same model and batches: the loss object (``GradDiff``; ``NPO`` with its frozen
reference), backward, AdamW step, ``zero_grad``. The hand loop is what one would write without Lightning (iterate
the loader, call the loss, step). The two run in lockstep, interleaved step by step in one process: after every
Trainer step a callback runs one step of the hand loop, so a shared machine's drift hits both alike. A Trainer step is
the wall time from one step's start to the next's, less the hand step in between (so fetching, hooks and logger
bookkeeping count against the Trainer); steps before ``--warmup`` are dropped. Throughput is the attention-mask
tokens of a step's forget and retain sub-batches over the median step time; the ratio is the median over steps of
loop step / Trainer step, each pair back to back (noise comes in one-sided bursts; the mean-based figure is printed
too). Target: Trainer/loop throughput >= 0.95.

    python -m benchmarks.unlearn_step
    python -m benchmarks.unlearn_step --device cuda --batch-size 16 --seq-len 512 --hidden-size 512 --layers 8
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer
from torch import nn
from torch.utils.data import DataLoader

from benchmarks._common import (
    add_model_arg,
    build_lm,
    lm_batch,
    median,
    paired_ratio,
    parser,
    setup,
    synchronize,
    write_json,
)
from mcu_lightning.core.forward import kv_cache_off
from mcu_lightning.losses import NPO, GradDiff
from mcu_lightning.models import as_policy, call_model
from mcu_lightning.modules import UnlearningModule


class HandLoop:
    """The minimal PyTorch loop: fetch, move, loss, backward, AdamW step, zero_grad; one call is one step.

    Like the module, it runs its forwards without a KV cache (``config.use_cache = False``).
    """

    def __init__(self, model: nn.Module, loss: nn.Module, data: list[dict], device: torch.device) -> None:
        self.model = copy.deepcopy(model).to(device).train()
        self.loss = copy.deepcopy(loss)
        reference = copy.deepcopy(model).to(device).requires_grad_(False).eval() if loss.needs_reference else None
        self.reference = reference
        self.optimizer = torch.optim.AdamW(self.model.parameters())
        self.batches = iter(DataLoader(data, batch_size=None))
        self.device = device

    def reference_policy(self, batch: dict) -> torch.Tensor:
        with torch.no_grad():
            return call_model(self.reference, batch)

    def step(self) -> None:
        batch = {name: {k: v.to(self.device) for k, v in sub.items()} for name, sub in next(self.batches).items()}
        reference_policy = self.reference_policy if self.reference is not None else None
        with kv_cache_off(self.model, *([self.reference] if self.reference is not None else [])):  # as the module
            out = self.loss(as_policy(self.model), batch, reference_policy)
        out.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()


class Lockstep(Callback):
    """Runs one hand-loop step after every Trainer step and times both, step by step (from batch ``warmup`` on).

    A Trainer step is the wall time from one ``on_train_batch_start`` to the next, less the hand step run in
    between: fetching, hooks and the logger's bookkeeping between steps count against the Trainer.
    """

    def __init__(self, hand: HandLoop, warmup: int, device: torch.device) -> None:
        self.hand, self.warmup, self.device = hand, warmup, device
        self.trainer_seconds: list[float] = []
        self.loop_seconds: list[float] = []
        self._start: float | None = None
        self._hand = 0.0

    def on_train_batch_start(self, trainer: Trainer, module: Any, batch: Any, batch_idx: int) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        if self._start is not None and batch_idx > self.warmup:
            self.trainer_seconds.append(now - self._start - self._hand)
        self._start = now

    def on_train_batch_end(self, trainer: Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        synchronize(self.device)
        start = time.perf_counter()
        self.hand.step()
        synchronize(self.device)
        self._hand = time.perf_counter() - start
        if batch_idx >= self.warmup:
            self.loop_seconds.append(self._hand)


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


def tokens_per_step(data: list[dict]) -> int:
    """Attention-mask tokens of one step's forget and retain sub-batches (every batch has the same count)."""
    return int(sum(sub["attention_mask"].sum() for sub in data[0].values()))


def run_lockstep(
    model: nn.Module, loss: nn.Module, data: list[dict], warmup: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """One ``Trainer.fit`` of ``UnlearningModule`` with the hand loop stepping alongside: (trainer, loop) seconds."""
    module = UnlearningModule(copy.deepcopy(model), loss=copy.deepcopy(loss), export=False)
    lockstep = Lockstep(HandLoop(model, loss, data, device), warmup, device)
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
        callbacks=[lockstep],
    )
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))
    steps = len(lockstep.trainer_seconds)  # trainer step i is known at step i + 1's start: the last has no pair
    return lockstep.trainer_seconds, lockstep.loop_seconds[:steps]


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("unlearn_step", __doc__.splitlines()[0])
    p.set_defaults(repeats=5, warmup=3)
    p.add_argument("--steps", type=int, default=40, help="timed steps per Trainer.fit (repeats fits per loss)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    add_model_arg(p)
    args = p.parse_args(argv)
    device = setup(args)
    model = build_lm(args, torch.device("cpu"), args.layers)
    data = batches(args, device)
    count = tokens_per_step(data)
    rows = []
    for name, loss in (("GradDiff", GradDiff(alpha=1.0)), ("NPO", NPO(beta=0.1))):
        seconds: dict[str, list[float]] = {"trainer": [], "loop": []}
        for _ in range(args.repeats):
            trainer_seconds, loop_seconds = run_lockstep(model, loss, data, args.warmup, device)
            seconds["trainer"] += trainer_seconds
            seconds["loop"] += loop_seconds
        trainer_tps, loop_tps = count / median(seconds["trainer"]), count / median(seconds["loop"])
        ratio = paired_ratio(seconds["loop"], seconds["trainer"])  # step i of both: tokens/s ratio
        mean_ratio = statistics.fmean(seconds["loop"]) / statistics.fmean(seconds["trainer"])
        print(
            f"unlearn_step {name}: Trainer/loop tokens/s ratio {ratio:.3f}  (Trainer {trainer_tps:,.0f} tok/s, "
            f"loop {loop_tps:,.0f} tok/s; {args.repeats} x {args.steps} steps of {args.batch_size}x{args.seq_len} "
            f"forget+retain; from mean step times {mean_ratio:.3f}; target >= 0.95)"
        )
        rows.append(
            {
                "case": f"{name} batch {args.batch_size} seq {args.seq_len}",
                "loss": name,
                "trainer_tokens_per_s": trainer_tps,
                "loop_tokens_per_s": loop_tps,
                "trainer_step_ms": median(seconds["trainer"]) * 1e3,
                "loop_step_ms": median(seconds["loop"]) * 1e3,
                "ratio": ratio,
                "ratio_of_medians": trainer_tps / loop_tps,
                "mean_ratio": mean_ratio,
                "target": 0.95,
                "meets_target": ratio >= 0.95,
            }
        )
    write_json(args.out, "unlearn_step", device, args, rows)
    return rows


if __name__ == "__main__":
    main()
