"""DivergenceGuard: stop an unlearning run that has diverged, and keep the last weights that had not.

Gradient ascent on the forget NLL has no minimum (GradAscent and GradDiff drive ``-NLL(forget)`` to -inf by
design), and a loss can turn NaN/inf. The guard reads what the losses log each step (``train/forget_nll``,
``train/retain_loss``, every ``train/*`` value) and stops the run when

* any logged ``train/*`` value, or any trainable parameter, is NaN or infinite;
* ``train/forget_nll > max_forget_nll`` (the model has unlearned to nonsense: NLL 20 means p(answer token)
  ~ e^-20);
* ``train/retain_loss > max_retain_ratio * r0`` with r0 the first retain loss it saw (utility collapsed).

Stopping sets ``trainer.should_stop``, logs the reason, and writes ``divergence.json`` to the module's
output folder. The guard also keeps the last good weights: the most recent trainable tensors whose training loss
passed the checks. The loss logged at step k is computed on the weights *before* update k, so the weights copied
after step k are only a candidate; the next check's healthy loss promotes them to last good. Both copies live in
memory, next to the parameters, and hold the *trainable* tensors only (the adapters of a LoRA run, not its frozen
base; no optimizer state): a check costs one device-local copy of the trainable weights, ~1 % of a 135M
full-weight step on CPU (docs/performance.md), where writing a checkpoint with optimizer state (1.6 GB at 135M)
cost more than the step itself. The price is memory: two extra copies of the trainable tensors. When the guard
trips it writes the last good tensors once to ``last_good.ckpt`` (``{"state_dict": ..., "global_step": ...}``,
trainable tensors only), and at ``on_fit_end`` (before the module exports) copies them back into the module, so
the exported model and the test metrics are those of the last good weights, never NaN ones. With
``check_every_n_steps = n > 1`` only every n-th step is read and copied.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from mcu_lightning.callbacks.checkpoint import atomic_write
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.names import CHECKPOINTS_DIR

log = logging.getLogger(__name__)

DIVERGENCE_JSON = "divergence.json"
LAST_GOOD = "last_good.ckpt"
FORGET_NLL_KEY = "train/forget_nll"
RETAIN_LOSS_KEY = "train/retain_loss"


class DivergenceGuard(Callback):
    """Stop training when the logged losses diverge; keep and restore the last good weights.

    Args:
        max_forget_nll: stop when ``train/forget_nll`` exceeds this (None: no limit).
        max_retain_ratio: stop when ``train/retain_loss`` exceeds this factor times its first value (None: no limit).
        check_every_n_steps: read the logged values every n optimizer steps.
        save_last_good: keep the last good trainable tensors in memory (one copy per check while healthy), written
            to ``last_good.ckpt`` when the guard trips.
        restore_last_good: on a stop, copy the last good tensors back into the module at ``on_fit_end``.
        dirpath: where ``last_good.ckpt`` goes; default the ModelCheckpoint's folder, else
            ``<output_dir>/checkpoints``.
    """

    def __init__(
        self,
        max_forget_nll: float | None = 20.0,
        max_retain_ratio: float | None = None,
        check_every_n_steps: int = 1,
        save_last_good: bool = True,
        restore_last_good: bool = True,
        dirpath: str | None = None,
    ) -> None:
        if check_every_n_steps < 1:
            raise InputError(f"check_every_n_steps={check_every_n_steps}; use 1 or more")
        if max_retain_ratio is not None and max_retain_ratio <= 1:
            raise InputError(f"max_retain_ratio={max_retain_ratio} must exceed 1 (a factor over the first retain loss)")
        self.max_forget_nll = max_forget_nll
        self.max_retain_ratio = max_retain_ratio
        self.check_every_n_steps = check_every_n_steps
        self.save_last_good = save_last_good
        self.restore_last_good = restore_last_good
        self.dirpath = dirpath
        self.first_retain: float | None = None
        self.reason: str | None = None
        self.step: int | None = None
        self._warned_missing = False
        self._candidate: dict[str, torch.Tensor] | None = None  # the weights after the last checked step
        self._last_good: dict[str, torch.Tensor] | None = None  # the newest weights whose loss passed
        self._candidate_step = self._last_good_step = 0
        self._has_candidate = False

    # -- where things go ---------------------------------------------------------------------------------
    @staticmethod
    def output_dir(trainer: Trainer, pl_module: LightningModule) -> Path:
        folder = getattr(pl_module, "output_dir", None)
        return Path(folder if folder is not None else trainer.log_dir or trainer.default_root_dir)

    def checkpoint_dir(self, trainer: Trainer, pl_module: LightningModule) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        callback = trainer.checkpoint_callback
        if callback is not None and getattr(callback, "dirpath", None):
            return Path(callback.dirpath)
        return self.output_dir(trainer, pl_module) / CHECKPOINTS_DIR

    def last_good_path(self, trainer: Trainer, pl_module: LightningModule) -> Path:
        return self.checkpoint_dir(trainer, pl_module) / LAST_GOOD

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    # -- the checks ----------------------------------------------------------------------------------------
    def violations(self, metrics: dict[str, Any], pl_module: LightningModule) -> tuple[list[str], list[str]]:
        """Reasons to stop: ``(loss_reasons, weight_reasons)``.

        Loss reasons judge the weights *before* this step's update (the logged loss was computed on them);
        weight reasons judge the weights after it.
        """
        values = {k: float(v) for k, v in metrics.items() if k.startswith("train/") and _is_scalar(v)}
        reasons = [f"{k} = {v}" for k, v in sorted(values.items()) if not math.isfinite(v)]
        if self.max_forget_nll is not None:
            nll = values.get(FORGET_NLL_KEY)
            if nll is None and not self._warned_missing:
                self._warned_missing = True
                rank_zero_warn(f"DivergenceGuard: the loss logs no '{FORGET_NLL_KEY}'; max_forget_nll is inactive")
            if nll is not None and math.isfinite(nll) and nll > self.max_forget_nll:
                reasons.append(f"{FORGET_NLL_KEY} = {nll:.4g} > max_forget_nll = {self.max_forget_nll:g}")
        retain = values.get(RETAIN_LOSS_KEY)
        if self.max_retain_ratio is not None and retain is not None and math.isfinite(retain):
            if self.first_retain is None:
                self.first_retain = retain
            elif retain > self.max_retain_ratio * self.first_retain:
                reasons.append(
                    f"{RETAIN_LOSS_KEY} = {retain:.4g} > max_retain_ratio {self.max_retain_ratio:g} x first "
                    f"value {self.first_retain:.4g}"
                )
        bad = [n for n, p in pl_module.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
        weights = [f"non-finite weights in {len(bad)} parameter(s), first '{bad[0]}'"] if bad else []
        return reasons, weights

    # -- hooks ---------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.reason, self.step = None, None
        self._candidate = self._last_good = None
        self._has_candidate = False
        if self.save_last_good:  # the starting weights: promoted once the first step's loss on them passes
            self._save_candidate(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self.tripped or step % self.check_every_n_steps != 0:
            return
        loss_reasons, weight_reasons = self.violations(step_metrics(trainer, pl_module), pl_module)
        if trainer.world_size > 1:
            loss_reasons, weight_reasons = agreed_reasons(trainer, loss_reasons, weight_reasons)
        if self.save_last_good and not loss_reasons:
            self._promote_candidate(trainer, pl_module)  # the loss on the candidate's weights passed
        if loss_reasons or weight_reasons:
            self.stop(trainer, pl_module, step, loss_reasons + weight_reasons)
            return
        if self.save_last_good and not (self._last_good is not None and self._last_good_step == step):
            self._save_candidate(trainer, pl_module)  # (a later micro-batch of a promoted step: nothing new)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not (self.tripped and self.restore_last_good):
            return
        if self._last_good is None:
            rank_zero_warn("DivergenceGuard: no last good weights were kept; the module keeps its last weights")
            return
        with torch.no_grad():
            for name, param in pl_module.named_parameters():
                if name in self._last_good:
                    param.copy_(self._last_good[name])
        log.warning("DivergenceGuard: restored the last good weights of step %s", self._last_good_step)

    def stop(self, trainer: Trainer, pl_module: LightningModule, step: int, reasons: list[str]) -> None:
        """Set ``should_stop``, log the reason, write ``divergence.json``."""
        self.reason, self.step = "; ".join(reasons), step
        trainer.should_stop = True
        self._write_last_good(trainer, pl_module)
        last_good = self.last_good_path(trainer, pl_module)
        message = (
            f"DivergenceGuard stopped training at step {step}: {self.reason}. "
            f"Last good weights: {last_good if last_good.is_file() else 'none'}"
        )
        rank_zero_warn(message)
        if trainer.is_global_zero:
            record = {
                "step": step,
                "epoch": trainer.current_epoch,
                "reasons": reasons,
                # relative to divergence.json's folder: still right after the study folder moves (read: last_good_of)
                "last_good": _relative(last_good, self.output_dir(trainer, pl_module)) if last_good.is_file() else None,
                "metrics": {k: _jsonable(v) for k, v in step_metrics(trainer, pl_module).items() if _is_scalar(v)},
            }
            atomic_write(self.output_dir(trainer, pl_module) / DIVERGENCE_JSON, json.dumps(record, indent=2).encode())

    def _save_candidate(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Copy the trainable tensors into the candidate buffers (allocated once, reused every check)."""
        with torch.no_grad():
            if self._candidate is None:
                self._candidate = {n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad}
            else:
                for name, param in pl_module.named_parameters():
                    if name in self._candidate:
                        self._candidate[name].copy_(param)
        self._candidate_step, self._has_candidate = trainer.global_step, True

    def _promote_candidate(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The candidate's loss passed: it becomes the last good copy (the old one's buffers are reused)."""
        if not self._has_candidate:
            return
        self._last_good, self._candidate, self._has_candidate = self._candidate, self._last_good, False
        self._last_good_step = self._candidate_step

    def _write_last_good(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """``last_good.ckpt``: the last good trainable tensors (once, when the guard trips)."""
        if self._last_good is None or not trainer.is_global_zero:
            return
        buffer = io.BytesIO()
        state = {n: t.detach().cpu() for n, t in self._last_good.items()}
        torch.save({"state_dict": state, "global_step": self._last_good_step, "trainable_only": True}, buffer)
        atomic_write(self.last_good_path(trainer, pl_module), buffer.getvalue())

    # -- state across resumes --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"first_retain": self.first_retain}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.first_retain = state_dict.get("first_retain")


def agreed_reasons(trainer: Trainer, loss_reasons: list[str], weight_reasons: list[str]) -> tuple[list[str], list[str]]:
    """Every process's reasons, prefixed with its rank, on every process: the guard stops (and promotes its candidate)
    on all processes or on none, since a process that stopped alone would leave the others waiting in a collective.
    Two flag all-reduces per check; the reasons themselves are gathered only when some process has one."""
    strategy = trainer.strategy
    any_loss = strategy.reduce_boolean_decision(bool(loss_reasons), all=False)
    any_weights = strategy.reduce_boolean_decision(bool(weight_reasons), all=False)
    if not (any_loss or any_weights):
        return [], []
    import torch.distributed as dist

    gathered: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(gathered, (loss_reasons, weight_reasons))
    rank_loss = [f"rank {rank}: {r}" for rank, (reasons, _) in enumerate(gathered) for r in reasons]
    rank_weights = [f"rank {rank}: {r}" for rank, (_, reasons) in enumerate(gathered) for r in reasons]
    return rank_loss, rank_weights


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)


def _jsonable(value: Any) -> float | str:
    number = float(value)
    return number if math.isfinite(number) else str(number)


def step_metrics(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
    """The logged metrics, overlaid with this step's values the module keeps in ``step_logs`` (the package's
    modules log their loss parts only on the logger's steps, but keep every step's values there)."""
    return {**dict(trainer.callback_metrics), **getattr(pl_module, "step_logs", {})}


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (POSIX separators), so a moved study folder keeps it right."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def last_good_of(divergence_json: str | os.PathLike) -> Path | None:
    """The ``last_good.ckpt`` a ``divergence.json`` names, resolved against the file's own folder (``None``: none)."""
    record = json.loads(Path(divergence_json).read_text())
    if not record.get("last_good"):
        return None
    return Path(divergence_json).parent / record["last_good"]
