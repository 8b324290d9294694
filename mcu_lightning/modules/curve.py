"""CurveModule: fit the control points of a curve between two endpoints, then read every metric along it.

Training draws one t per batch from the sampler and minimises the objective at theta(t) (Garipov et al.,
2018, Sec. 3.2; the MCU authors use the unlearning method's own objective and a clipped-normal t).
``test`` evaluates the metric suite at every t of ``eval_ts`` (BatchNorm statistics recomputed at each t)
and writes ``curve_metrics.csv``, a metric-vs-t figure, TensorBoard scalars and the barrier summary.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from mcu_lightning.callbacks.checkpoint import CheckpointError
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import frozen_policy
from mcu_lightning.core.names import ADAPTER_CONFIG, PROBE_PREFIX
from mcu_lightning.core.per_sample import mean_nll
from mcu_lightning.core.streams import stream_generator
from mcu_lightning.core.termination import stop_requested
from mcu_lightning.curves import (
    Bezier,
    Curve,
    CurveShape,
    TemplateCurve,
    TSampler,
    Uniform,
    enable_gradient_checkpointing,
    has_batchnorm,
    is_base_folder,
    lora_curve,
    recompute_batchnorm,
    t_grid,
)
from mcu_lightning.curves.slerp import Slerp, SlerpCurve
from mcu_lightning.losses.base import LossOutput, UnlearningLoss
from mcu_lightning.losses.nll import NLL
from mcu_lightning.metrics.suite import EvalResult, MetricSuite
from mcu_lightning.models.hf import resolve_dtype
from mcu_lightning.models.io import load_model, load_state_dict
from mcu_lightning.modules.base import MCUModule
from mcu_lightning.modules.frozen import load_frozen
from mcu_lightning.modules.lifecycle import LossLifecycle, TrainedCurve
from mcu_lightning.probes.base import Probe, probe_direction, run_probes
from mcu_lightning.report.curve import write_curve_report
from mcu_lightning.report.figure_style import curve_title

TEMPLATE_PREFIX = "template."


CURVE_SHAPE_KEY = "mcu_curve_shape"
#: The state-dict keys of a curve's trainable control points.
CONTROL_POINTS_PREFIX = "curve.control_points."
#: What a checkpoint records of the curve's objective to be rebuilt without it: its class, and the parameter names
#: its ``is_trainable`` refused (RMU's layers decide which tensors are on the curve, so the control points' shapes).
CURVE_OBJECTIVE_KEY = "mcu_curve_objective"


class CurveModule(MCUModule):
    """Fit a curve between ``endpoints`` (two paths) with ``objective`` at a random t per batch.

    Args:
        endpoints: two model paths (exported folders, ``save_pretrained`` folders, .safetensors, .ckpt).
        template: the architecture (a module or a path); default: loaded from the first endpoint.
        shape: ``Bezier(3)`` by default (the quadratic curve of Garipov et al.); ``Slerp()`` is SLERP per tensor
            (a :class:`~mcu_lightning.curves.slerp.SlerpCurve`, training-free).
        init: ``"linear"`` or a path to a third model (the authors: the model before unlearning).
        fixed_bends: keep the interior bends at ``init`` (no trainable parameters): a training-free path that
            ``test`` evaluates without ``fit``, e.g. ``shape: PolyChain(3)`` with ``init: <base>`` is the path
            through the base. ``has_free_points`` says whether a curve has anything to fit.
        include: a regex restricting the curve to matching parameter names (e.g. LoRA adapters).
        objective: the loss at theta(t): the endpoints' unlearning loss, or ``NLL(split="retain")``. Its whole
            lifecycle runs on the curve (``UnlearningLoss``): ``is_trainable`` restricts the curve like ``include``,
            ``setup_model`` sees the first endpoint, gradient hooks see the control points' gradients by name.
        reference: frozen reference model path for objectives that need one.
        t_sampler: ``Uniform`` (Garipov et al.), ``ClippedNormal`` (MCU authors), ``Stratified``.
        t_per_rank: under DDP, draw a different t on each rank (default: the same t on every rank).
        l2: weight of ``0.5 * ||theta(t)||^2`` added to the objective (Garipov et al.'s weight decay).
        eval_ts: the test grid: a number of evenly spaced points, or the values.
        val_ts: interior t at which validation logs the split losses.
        bn_batches: batches of retain data for the BatchNorm recompute at each t (all when None).
        seed: seeds the t sequence (keyed by (seed, draw index), so a resumed run draws the same t).
        base: for LoRA-adapter endpoints (folders with ``adapter_config.json``): the shared base model.
        space: LoRA-space curves only: ``"factors"`` interpolates A and B separately (the MCU authors' choice;
            B(t)A(t) is then not the straight line in delta-W), ``"delta"`` is exact in delta-W (concatenated ranks).
        dtype: dtype to load the template (and a LoRA base) in, e.g. ``bfloat16``; endpoints keep their own.
        gradient_checkpointing: activation checkpointing on a Hugging Face template, recomputed at theta(t).
        probes: robustness probes ``test`` runs at every ``probe.every``-th t (and both endpoints) after the suite;
            their ``base`` reference is ``reference`` (else a path ``init``), ``end0``/``end1`` the endpoints.
    """

    def __init__(
        self,
        endpoints: list[str],
        template: nn.Module | str | None = None,
        shape: CurveShape | None = None,
        init: str = "linear",
        include: str | None = None,
        objective: UnlearningLoss | None = None,
        reference: str | None = None,
        t_sampler: TSampler | None = None,
        t_per_rank: bool = False,
        l2: float = 0.0,
        eval_ts: int | list[float] = 31,
        val_ts: list[float] | None = None,
        bn_batches: int | None = None,
        seed: int = 0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: str = "constant",
        warmup_steps: float = 0,
        suite: MetricSuite | None = None,
        output_dir: str | None = None,
        base: str | None = None,
        space: Literal["factors", "delta"] = "factors",
        dtype: str | None = None,
        gradient_checkpointing: bool = False,
        probes: list[Probe] | None = None,
        fixed_bends: bool = False,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            warmup_steps=warmup_steps,
            suite=suite,
            output_dir=output_dir,
            probes=probes,
        )
        self.save_hyperparameters(
            ignore=["template", "shape", "objective", "t_sampler", "suite", "optimizer", "probes"]
        )
        if len(endpoints) != 2:
            raise InputError(f"a curve connects exactly two endpoints; got {len(endpoints)}: {endpoints}")
        shape = shape or Bezier(3)
        self.objective = objective if objective is not None else NLL(split="retain")
        self.lifecycle = LossLifecycle(self.objective)
        # the objective's parameter subset (RMU) is what the curve moves; its answers go into every checkpoint
        self.refused: list[str] = []

        def trainable(name: str) -> bool:
            kept = bool(self.lifecycle.is_trainable(name))
            if not kept and name not in self.refused:
                self.refused.append(name)
            return kept

        adapters = [(Path(e) / ADAPTER_CONFIG).is_file() for e in endpoints]
        slerp = isinstance(shape, Slerp)
        if slerp and init != "linear":
            raise InputError(f"shape Slerp() has no interior bends, so init={init!r} has nothing to place; drop init")
        if any(adapters) and (slerp or fixed_bends):
            raise InputError("LoRA-space curves support neither shape Slerp() nor fixed_bends; use full models")
        if any(adapters):
            ends = [
                adapter or (base is not None and is_base_folder(e, base))
                for e, adapter in zip(endpoints, adapters, strict=True)
            ]
            if not all(ends) or base is None:
                raise InputError(
                    "LoRA-space curve: each endpoint must be an adapter folder (or the base itself) and `base:` must "
                    f"name the base model they were trained on (endpoints {endpoints}, base {base!r})"
                )
            self.curve: TemplateCurve = lora_curve(
                base, endpoints, shape, init=init, space=space, dtype=resolve_dtype(dtype), trainable=trainable
            )
            template = self.curve.template
        else:
            if not isinstance(template, nn.Module):
                template = load_model(template or endpoints[0], dtype=resolve_dtype(dtype))
            if slerp:
                self.curve = SlerpCurve(template, endpoints, include=include, trainable=trainable)
            else:
                self.curve = Curve(
                    template, endpoints, shape, init, include=include, trainable=trainable, fixed_bends=fixed_bends
                )
        template.requires_grad_(False)
        if gradient_checkpointing:
            enable_gradient_checkpointing(template)
        self.template = template  # the working copy that evaluation writes theta(t) into
        self._reference: list[nn.Module] = []  # a list hides it from state_dict and from the optimizer
        if self.objective.needs_reference:
            what = f"the curve objective {type(self.objective).__name__} needs a reference model"
            self._reference.append(load_frozen(reference, what=what))
        self.t_sampler = t_sampler if t_sampler is not None else Uniform()
        self.t_per_rank = t_per_rank
        self.l2 = l2
        self.eval_ts = t_grid(eval_ts)
        self.val_ts = t_grid(val_ts if val_ts is not None else [0.25, 0.5, 0.75])
        self.bn_batches = bn_batches
        self.reference_source = reference if reference is not None else (None if init == "linear" else init)
        self.seed = seed
        self.curve_results: list[EvalResult] = []

    # -- training ----------------------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        return self.template

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.curve.control_points)

    @property
    def has_free_points(self) -> bool:
        """Whether the curve has control points to fit; False for a training-free path (the straight line, SLERP,
        ``fixed_bends``), which ``test`` evaluates as it stands."""
        return self.curve.has_free_points

    def sample_t(self, batch_idx: int = 0) -> float:
        """The t of this batch: draw ``i = (step * A + batch_idx mod A) * R + rank`` of the fit (``A`` batches
        accumulated per step; ``R`` ranks with ``t_per_rank``, else 1 and every rank draws the same t), from stream
        ``curve-t`` at (seed, i) (:mod:`mcu_lightning.core.streams`) through ``t_sampler.draw(seed, i, ...)``.

        The draw depends on its key alone: a resumed run draws the same sequence, and two seeds share none.
        Keying by step alone would give every micro-batch of an accumulated step the same t.
        """
        trainer = self._trainer
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        ranks = trainer.world_size if trainer is not None and self.t_per_rank else 1
        rank = self.global_rank if self.t_per_rank else 0
        index = (self.global_step * accumulate + batch_idx % accumulate) * ranks + rank
        return float(self.t_sampler.draw(self.seed, index, stream_generator(self.seed, "curve-t", index)))

    def setup(self, stage: str) -> None:
        if stage == "fit" and not self.has_free_points:
            raise InputError(
                f"the curve ({self.curve.shape}{', fixed_bends' if self.curve.fixed_bends else ''}) "
                "has no free points to fit; evaluate it with test (no fit stage)"
            )
        super().setup(stage)
        strategy = type(self.trainer.strategy).__name__
        if "FSDP" in strategy or "DeepSpeed" in strategy or "ModelParallel" in strategy:
            raise InputError(
                f"CurveModule does not support sharded control points ({strategy}); use strategy=ddp (model "
                "replicated), a LoRA-space curve, or `include:` to put only some parameters on the curve"
            )
        precision = str(self.trainer.precision)
        if precision.endswith("-true") and precision != "32-true" and precision != "64-true":
            raise InputError(
                f"precision={precision} would cast the fp32 control points; use bf16-mixed (endpoints may stay bf16)"
            )

    def reference_models(self) -> list[nn.Module]:
        """The objective's frozen reference, when it needs one."""
        return list(self._reference)

    def trained_network(self) -> TrainedCurve:
        """The control points, read through the template; ``setup_model`` sees the template at theta(0)."""
        return TrainedCurve(self.curve, self.template)

    # -- checkpoints: control points, not another copy of the model ----------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the working copy (``template.*``): it is rebuilt from the endpoints, and keeping it would put a
        whole model (a whole base, for LoRA-space curves) into every checkpoint next to the control points."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(TEMPLATE_PREFIX)]:
            del state[key]
        checkpoint[CURVE_SHAPE_KEY] = repr(self.curve.shape)
        kind = type(self.objective)
        checkpoint[CURVE_OBJECTIVE_KEY] = {
            "class_path": f"{kind.__module__}.{kind.__qualname__}",
            "refused": self.refused,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the rebuilt working copy back, so the strict ``load_state_dict`` that follows sees every key.

        A checkpoint of another curve shape or number of bends is refused in one line naming both, before the
        ``load_state_dict`` that would fail on the control points' shapes.
        """
        saved = checkpoint.get(CURVE_SHAPE_KEY)
        if saved is not None and saved != repr(self.curve.shape):
            raise CheckpointError(
                f"the checkpoint was made with {saved} and this curve is {self.curve.shape}; resume with the same "
                "shape and num_bends, or start a new run (a new output folder, no --ckpt_path)"
            )
        state = checkpoint["state_dict"]
        mine = self.state_dict()
        points = CONTROL_POINTS_PREFIX
        saved_points = sorted(k for k in state if k.startswith(points))
        own_points = sorted(k for k in mine if k.startswith(points))
        if bool(saved_points) != bool(own_points):
            fixed = self.curve.fixed_bends
            raise CheckpointError(
                f"the checkpoint holds {len(saved_points)} trained control point(s) and this curve has "
                f"{len(own_points)}{' (fixed_bends: true)' if fixed else ''}; load it with the settings it was made "
                f"with ({'without' if saved_points else 'with'} fixed_bends), or start a new run"
            )
        clash = [
            k for k, v in state.items() if k in mine and not k.startswith(TEMPLATE_PREFIX) and v.shape != mine[k].shape
        ]
        if clash:
            name = clash[0]
            raise CheckpointError(
                f"the checkpoint's {name} has shape {tuple(state[name].shape)} and this curve's has "
                f"{tuple(mine[name].shape)} (another shape, num_bends, include or endpoints); resume with the settings "
                "it was made with, or start a new run"
            )
        for key, value in self.template.state_dict().items():
            state.setdefault(TEMPLATE_PREFIX + key, value)

    def reference_policy(self) -> Any:
        reference = self.reference_network()
        return frozen_policy(reference) if reference is not None else None

    def objective_at(self, t: float, batch: Mapping[str, Any]) -> LossOutput:
        """The objective at theta(t) on one training batch (without the L2 term)."""
        return self.objective(partial(self.curve, t), batch, self.reference_policy())

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        t = self.sample_t(batch_idx)
        out = self.objective_at(t, batch)
        loss = out.loss
        if self.l2:
            loss = loss + 0.5 * self.l2 * sum(p.float().pow(2).sum() for p in self.curve.params(t).values())
        size = len(next(iter(batch.values()))["labels"])
        self.log_step(loss, {**out.logs, "t": torch.tensor(t)}, size)
        return loss

    # -- validation: losses at a few interior t ----------------------------------------------------
    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        split = self.eval_split(dataloader_idx)
        for t in self.val_ts:
            loss = mean_nll(self.curve(t, batch), batch["labels"]).mean()
            self.log(
                f"val/{split}_loss/t={t:.2f}",
                loss,
                add_dataloader_idx=False,
                sync_dist=True,
                batch_size=len(batch["labels"]),
            )

    # -- test: the suite at every t ------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        if self.suite is None:
            raise InputError("CurveModule.test needs a metric suite: set `model.init_args.suite` in the config")
        self.test_batches: list[tuple[str, Mapping[str, Any]]] = []

    def test_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Collect this rank's evaluation batches; the t-major evaluation runs once they are all here."""
        self.test_batches.append((self.eval_split(dataloader_idx), batch))

    def on_test_epoch_end(self) -> None:
        """For each t: write theta(t) into the working copy once, recompute BatchNorm, run every split."""
        self.curve_results = []
        self.bn_batches_cache = list(self.split_batches("retain")) if has_batchnorm(self.template) else []
        if self.bn_batches is not None:
            self.bn_batches_cache = self.bn_batches_cache[: self.bn_batches]
        context = self.probe_context(EvalResult()) if self.probes else None
        self._announce_point(0)
        for index, t in enumerate(self.eval_ts):
            with self.evaluation_precision():  # as the endpoints' own test_step ran (bf16-mixed: autocast)
                model = self._point(t)
                suite = self.suite
                suite.reset()
                with torch.no_grad():
                    suite.update_many(model, self.test_batches, self._announce_batch)  # QASuite: one generate
                result = suite.compute()
                if context is not None:  # after the suite: a probe may reuse (and reset) it
                    context.before = result
                    result.aggregates.update(run_probes(self.probes, model, context, index, len(self.eval_ts)))
            self.curve_results.append(result)
            for name, value in result.aggregates.items():
                self.logger_log_t(name, value, index)
            self._announce_point(index + 1)
            self._stop_on_sigterm()
        self.test_batches, self.bn_batches_cache = [], []
        self._write_report()

    def probe_references(self) -> dict[str, Mapping[str, Tensor]]:
        """``base`` (``reference``, else a path ``init``) when there is one, and the endpoints ``end0``/``end1``."""
        references: dict[str, Mapping[str, Tensor]] = {}
        if self.reference_source is not None:
            references["base"] = load_state_dict(self.reference_source)
        references["end0"], references["end1"] = self.curve.params(0.0), self.curve.params(1.0)
        return references

    def _stop_on_sigterm(self) -> None:
        """Raise Lightning's ``SIGTERMException`` once the Trainer received SIGTERM (or a study requested the stop):
        the t loop runs inside one test epoch, where Lightning's own check (between batches) never comes."""
        if stop_requested() or getattr(self._trainer, "received_sigterm", False):
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            raise SIGTERMException

    def _announce_batch(self, done: int, total: int) -> None:
        """Tell callbacks with an ``on_curve_batch`` hook how much of the current point's evaluation is done."""
        self._stop_on_sigterm()
        for callback in self.trainer.callbacks:
            hook = getattr(callback, "on_curve_batch", None)
            if hook is not None:
                hook(self.trainer, self, done, total)

    def _announce_point(self, done: int) -> None:
        """Tell callbacks with an ``on_curve_point`` hook (a progress bar) how many of the points t are done."""
        total = len(self.eval_ts)
        t = self.eval_ts[min(done, total - 1)]
        for callback in self.trainer.callbacks:
            hook = getattr(callback, "on_curve_point", None)
            if hook is not None:
                hook(self.trainer, self, done, total, t)

    def model_at(self, t: float, bn_batches: Iterable[Mapping[str, Any]] = ()) -> nn.Module:
        """A standalone copy of the model at theta(t) in eval mode (the working copy stays the curve's).

        BatchNorm statistics are recomputed at t over ``bn_batches`` (flat retain batches), as ``test`` does
        (Garipov et al., 2018, Sec. 3.4); a BatchNorm model needs them. For a LoRA-space curve the copy is the
        template's peft model with the adapter at t (rank ``R`` in delta space).
        """
        if not 0.0 <= float(t) <= 1.0:
            raise InputError(f"t={t} is outside [0, 1]; t parametrises the curve from endpoint 0 to endpoint 1")
        batches = list(bn_batches)
        if has_batchnorm(self.template) and not batches:
            raise InputError(f"the model has BatchNorm: pass retain batches to recompute its statistics at t={t}")
        model = copy.deepcopy(self.template)
        self.curve.write_to(model, float(t))
        recompute_batchnorm(model, batches)
        return model.eval()

    def _point(self, t: float) -> nn.Module:
        """The working copy at theta(t), BatchNorm statistics recomputed there on retain data when it has any."""
        model = self.curve.write_to(self.template, t)
        if has_batchnorm(model):  # Garipov et al., Sec. 3.4: statistics of theta(t), not interpolated ones
            recompute_batchnorm(model, self.bn_batches_cache)
        return model.eval()

    def logger_log_t(self, name: str, value: float, index: int) -> None:
        logger = self.logger
        if logger is not None and self.global_rank == 0:
            logger.log_metrics({f"curve/{name}": float(value)}, step=index)

    def metric_direction(self, name: str) -> str | bool | None:
        """Which way column ``name`` is better: the suite's direction (``higher``/``lower``/``zero``/``none``), or
        the probe's for ``probe/<name>/...`` columns (``True``: higher, ``None``: no better side)."""
        if name.startswith(PROBE_PREFIX):
            return probe_direction(self.probes, self.suite)(name)
        return self.suite.direction(name)

    @rank_zero_only
    def _write_report(self) -> None:
        write_curve_report(
            self.eval_ts,
            self.curve_results,
            self.output_dir,
            direction=self.metric_direction,
            path_length=self.curve.path_length(self.eval_ts),
            logger=self.logger,
            title=curve_title(self.output_dir.name, self.hparams.get("endpoints")),
        )
