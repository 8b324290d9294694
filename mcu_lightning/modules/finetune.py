"""FineTuneModule: plain training of a model on one split (the base model on ``full``, the oracle on ``retain``).

It is also the parent of ``UnlearningModule``: both own one model, train it with an ``UnlearningLoss``
(fine-tuning uses ``NLL(split="train")``), and export it as a folder that a curve can use as an endpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from mcu_lightning.callbacks.checkpoint import CheckpointError
from mcu_lightning.callbacks.guard import DivergenceGuard
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import as_policy
from mcu_lightning.core.names import MODEL_DIR
from mcu_lightning.losses.base import LossOutput, UnlearningLoss
from mcu_lightning.losses.nll import NLL
from mcu_lightning.metrics.suite import MetricSuite
from mcu_lightning.models.io import load_model, load_state_dict, save_model
from mcu_lightning.modules.base import MCUModule
from mcu_lightning.modules.lifecycle import LossLifecycle, TrainedModel
from mcu_lightning.probes.base import Probe

FROZEN_BASE_KEY = "frozen_base"


class FineTuneModule(MCUModule):
    """Train ``model`` with ``loss`` (default: NLL on the ``train`` sub-batch) and export it.

    Args:
        model: an ``nn.Module`` (by class path: e.g. ``mcu_lightning.models.tiny_causal_lm``), or a path or
            Hub name that ``load_model`` reads.
        loss: the objective; any ``UnlearningLoss``.
        export: write the trained model to ``<output_dir>/model`` at the end of ``fit``.
        probes: robustness probes run by ``test`` (the ``base`` reference is the starting model when it is a path).
    """

    def __init__(
        self,
        model: nn.Module | str,
        loss: UnlearningLoss | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: str = "constant",
        warmup_steps: float = 0,
        suite: MetricSuite | None = None,
        output_dir: str | None = None,
        export: bool = True,
        probes: list[Probe] | None = None,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            warmup_steps=warmup_steps,
            suite=suite,
            output_dir=output_dir,
            probes=probes,
        )
        self.save_hyperparameters(ignore=["model", "loss", "suite", "optimizer", "probes"])
        self.model_source = model if isinstance(model, str) else None
        # from_pretrained returns eval mode; a model loaded to be trained must train (dropout on)
        self.model = load_model(model).train() if isinstance(model, str) else model
        check_finite(self.model, f"starting model {model!r}" if isinstance(model, str) else "starting model")
        self.loss = loss if loss is not None else NLL(split="train")
        self.lifecycle = LossLifecycle(self.loss)
        self.export = export
        self.freeze_untrainable()

    def freeze_untrainable(self) -> None:
        """Freeze the parameters the loss does not update (``loss.is_trainable``), before any optimizer or DDP."""
        trainable = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        kept = set(self.lifecycle.trainable(trainable))
        for name, param in trainable.items():
            if name not in kept:
                param.requires_grad_(False)

    def eval_model(self) -> nn.Module:
        return self.model

    def trained_network(self) -> TrainedModel:
        return TrainedModel(self.model)

    def reference_policy(self) -> Any:
        return None

    def probe_references(self) -> dict[str, Mapping[str, Tensor]]:
        """``base``: the starting model's weights, when it was given as a path."""
        return {"base": load_state_dict(self.model_source)} if self.model_source is not None else {}

    def compute_loss(self, batch: Mapping[str, Any]) -> LossOutput:
        """The loss on one training batch at the current weights (what ``training_step`` minimises)."""
        return self.loss(as_policy(self.model), batch, self.reference_policy())

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        """One fine-tuning step: the loss (NLL on the fine-tuning split) at the current weights."""
        return self.take_step(self.compute_loss(batch), batch)

    def take_step(self, out: LossOutput, batch: Mapping[str, Any]) -> Tensor | None:
        """Log the step and return the loss to minimise; a non-finite loss is logged for ``DivergenceGuard`` to stop
        the run on (returning None skips backward and the step), or fails with the fix when no guard runs.

        Under DDP the decision is agreed: when the loss of any process is non-finite, every process returns a zero
        loss with exactly zero gradients (Lightning refuses None there, and a process that skipped alone would leave
        the others waiting in the gradient all-reduce), and every process's guard stops the run on that step
        (``DivergenceGuard`` agrees its stop too), restoring the last good weights."""
        size = _batch_size(batch)
        finite = bool(torch.isfinite(out.loss))
        if self.trainer.world_size > 1:  # one all-reduce of a flag; a single process decides alone
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        self.log_step(out.loss, out.logs, size)
        if finite:
            return out.loss
        if not any(isinstance(cb, DivergenceGuard) for cb in self.trainer.callbacks):
            where = "" if torch.isfinite(out.loss) else f" ({out.loss.item()})"
            raise FloatingPointError(
                f"{type(self.loss).__name__} gave a non-finite loss{where} at step {self.global_step} (in at least "
                "one process); lower the learning rate or add mcu_lightning.callbacks.DivergenceGuard"
            )
        if self.trainer.world_size > 1:
            trainable = [p for p in self.parameters() if p.requires_grad]
            return sum((p.sum() * 0.0 for p in trainable), out.loss.new_zeros(()))
        return None  # the guard reads the NaN/inf and stops the run; None skips backward and the step

    # -- checkpoints: what trains, not the frozen base ------------------------------------------------------
    def frozen_parameter_names(self) -> list[str]:
        """State-dict keys of the frozen parameters (a LoRA run's base, a loss's ``is_trainable`` remainder), when
        some parameter trains; empty for a full-weight run."""
        params = dict(self.named_parameters(remove_duplicate=False))  # tied weights (lm_head) under each name
        if not any(p.requires_grad for p in params.values()):
            return []
        return [name for name, p in params.items() if not p.requires_grad]

    def frozen_fingerprint(self) -> str:
        """SHA-256 over the frozen parameters' names, dtypes, shapes and bytes (computed once, they never change)."""
        if getattr(self, "_frozen_sha", None) is None:
            self._frozen_sha = tensors_sha256({n: p for n, p in self.named_parameters() if not p.requires_grad})
        return self._frozen_sha

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Leave the frozen base out: a LoRA checkpoint holds the adapters and the optimizer state, and names the base
        by its source and hash (``frozen_base``); it is rebuilt from the source when the checkpoint loads."""
        frozen = self.frozen_parameter_names()
        if not frozen:
            return
        state = checkpoint["state_dict"]
        for name in frozen:
            state.pop(name, None)
        checkpoint[FROZEN_BASE_KEY] = {
            "source": self.model_source or type(self.model).__name__,
            "sha256": self.frozen_fingerprint(),
            "keys": len(frozen),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put this module's own frozen base back (after checking it is the one the checkpoint was made on), so the
        strict ``load_state_dict`` that follows sees every key."""
        record = checkpoint.get(FROZEN_BASE_KEY)
        if record is None:
            return
        mine = self.frozen_fingerprint()
        if record["sha256"] != mine:
            raise CheckpointError(
                f"the checkpoint was trained on the frozen base {record['source']!r} (sha256 {record['sha256'][:12]}) "
                f"and this module's base differs (sha256 {mine[:12]}); load it with the model it was made with"
            )
        state = checkpoint["state_dict"]
        for name, param in self.named_parameters(remove_duplicate=False):
            if not param.requires_grad:
                state.setdefault(name, param.detach())

    def on_fit_end(self) -> None:
        if self.export:
            self.export_model()

    @rank_zero_only
    def export_model(self) -> None:
        """Write the model (``save_pretrained`` folder, or ``mcu_model.json`` + safetensors) atomically; never NaN."""
        check_finite(self.model, "the trained model", error=FloatingPointError)
        save_model(self.model, self.output_dir / MODEL_DIR, tokenizer=self.tokenizer)


def tensors_sha256(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of each tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy() if tensor.numel() else b"")
    return digest.hexdigest()


def check_finite(model: nn.Module, what: str, error: type[Exception] = InputError) -> None:
    """Raise ``error`` naming the first floating tensor of ``model`` that holds NaN or inf."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise error(
                f"{what} has non-finite values (NaN or inf) in '{name}'; "
                "use an earlier checkpoint (DivergenceGuard keeps last_good.ckpt) or retrain it"
            )


def _batch_size(batch: Mapping[str, Any]) -> int:
    first = next(iter(batch.values()))
    if isinstance(first, Mapping):
        first = first["labels"]
    return len(first)
