"""What each kind of stage runs: the base and oracle, an unlearning endpoint, a curve (fit and test, or a
training-free path's test). :class:`~mcu_lightning.study.runner.StudyRunner` runs them in its plan's order; the
stages that read a tested curve (ensembles, the plane, export_best) and the merges are in
:mod:`mcu_lightning.study.uses`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mcu_lightning.study.build import build, optimizer_factory
from mcu_lightning.study.schema import (
    BUILTIN_NODES,
    CurveSpec,
    Endpoint,
    StudyError,
    Training,
    curve_objective_spec,
    endpoint_loss_spec,
    is_path,
    path_shape,
)


class StageRunners:
    """The stage functions of :class:`~mcu_lightning.study.runner.StudyRunner` (its building blocks: ``study``,
    ``datamodule``, ``suite``, ``probes``, ``trainer``, ``trainer_call``, ``fit_and_test``, ``model_path``,
    ``node_dir``)."""

    study: Any
    root: Path

    def run_model_stage(self, node: str) -> dict[str, Any]:
        """The base (trained on ``full``) or the oracle (on ``retain``); an existing ``path`` is only tested."""
        from lightning.pytorch import seed_everything
        from torch import nn

        from mcu_lightning.modules.finetune import FineTuneModule

        stage = self.study.base if node == "base" else self.study.oracle
        directory = self.node_dir(node)
        suite = self.suite(with_oracle=node != "oracle")
        if stage.path is not None:  # read only: test it, export nothing
            module = FineTuneModule(
                stage.path, suite=suite, output_dir=str(directory), export=False, probes=self.probes()
            )
            return self.test_only(directory, module)
        spec = stage.model or self.study.base.model
        training = stage.train if stage.model is not None or node == "base" else self.study.base.train
        seed_everything(self.study.seed, workers=True)
        module = FineTuneModule(
            build(spec, nn.Module, f"{node}.model"),
            optimizer=optimizer_factory(training.optimizer),
            lr_scheduler=training.lr_scheduler,
            warmup_steps=training.warmup_steps,
            suite=suite,
            output_dir=str(directory),
            # trained from scratch: no weights before it to measure against (a distance would only warn)
            probes=[probe for probe in self.probes() if not probe.needs_references],
        )
        split = stage.split or ("full" if node == "base" else "retain")
        datamodule = self.datamodule({"finetune_split": split}, training.batch_size)
        return self.fit_and_test(directory, module, datamodule, training)

    def retest_model_stage(self, node: str) -> dict[str, Any]:
        """The test of a trained base or oracle on the weights its fit exported (its evaluation alone changed)."""
        from mcu_lightning.modules.finetune import FineTuneModule

        directory = self.node_dir(node)
        probes = [probe for probe in self.probes() if not probe.needs_references]  # as its first test
        suite = self.suite(with_oracle=node != "oracle")
        module = FineTuneModule(
            self.model_path(node), suite=suite, output_dir=str(directory), export=False, probes=probes
        )
        return self.test_only(directory, module)

    def test_only(
        self, directory: Path, module: Any, ckpt_path: Path | None = None, datamodule: Any = None
    ) -> dict[str, Any]:
        """The test alone; ``datamodule`` as the stage's fit built it (default: the study's data as given)."""
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        trainer = self.trainer(directory, Training())
        path = str(ckpt_path) if ckpt_path is not None else None
        datamodule = datamodule if datamodule is not None else self.datamodule()
        with self.trainer_call():
            trainer.test(module, datamodule=datamodule, verbose=False, ckpt_path=path)
        return {"test_seconds": time.perf_counter() - started}

    def run_endpoint(self, endpoint: Endpoint) -> dict[str, Any]:
        from lightning.pytorch import seed_everything

        seed_everything(endpoint.seed, workers=True)
        module = self.endpoint_module(endpoint)
        datamodule = self.endpoint_datamodule(endpoint)
        guards = []
        if self.study.guard is not None:  # gradient ascent diverges by design: stop it, keep the last good weights
            from lightning.pytorch import Callback

            guards.append(build(self.study.guard, Callback, "guard"))
        return self.fit_and_test(self.node_dir(endpoint.name), module, datamodule, endpoint.train, guards)

    def retest_endpoint(self, endpoint: Endpoint) -> dict[str, Any]:
        """The endpoint's test on the weights its fit exported (its evaluation alone changed): the module built as
        for its fit (the base as its probes' reference), the exported weights loaded into it."""
        from mcu_lightning.models.io import load_exported

        module = self.endpoint_module(endpoint, export=False)
        load_exported(module.model, self.model_path(endpoint.name))
        # the data as its fit had it: the module's hyper-parameters (its seed) must agree with the data module's
        return self.test_only(self.node_dir(endpoint.name), module, datamodule=self.endpoint_datamodule(endpoint))

    def endpoint_datamodule(self, endpoint: Endpoint) -> Any:
        """The endpoint's data module: the study's data with the endpoint's seed, ``data`` and curriculum."""
        overrides = {"seed": endpoint.seed, **endpoint.data}
        if endpoint.curriculum is not None:
            overrides["curriculum"] = endpoint.curriculum
        return self.datamodule(overrides, endpoint.train.batch_size)

    def endpoint_module(self, endpoint: Endpoint, export: bool = True) -> Any:
        """The endpoint's :class:`UnlearningModule` as built for its stage (at the base's weights)."""
        from mcu_lightning.losses.base import UnlearningLoss
        from mcu_lightning.models.hf import LoraSpec
        from mcu_lightning.modules.unlearn import UnlearningModule

        loss = build(endpoint_loss_spec(endpoint), UnlearningLoss, f"endpoint '{endpoint.name}' loss")
        during = None
        if endpoint.during_training:
            from mcu_lightning.callbacks.during_training import EvaluateDuringTraining

            during = EvaluateDuringTraining(**{**endpoint.during_training, "select": endpoint.select})
        return UnlearningModule(
            self.model_path("base"),
            loss,
            lora=LoraSpec(**endpoint.lora) if endpoint.lora is not None else None,
            optimizer=optimizer_factory(endpoint.train.optimizer),
            lr_scheduler=endpoint.train.lr_scheduler,
            warmup_steps=endpoint.train.warmup_steps,
            suite=self.suite(with_oracle=True),
            output_dir=str(self.node_dir(endpoint.name)),
            probes=self.probes(),
            during_training=during,
            export=export,
            seed=endpoint.seed,
        )

    def curve_objective_spec(self, curve: CurveSpec) -> Any:
        """The objective as a class spec (:func:`~mcu_lightning.study.schema.curve_objective_spec`)."""
        return curve_objective_spec(curve, self.study.endpoints)

    def curve_objective(self, curve: CurveSpec) -> Any:
        from mcu_lightning.losses.base import UnlearningLoss
        from mcu_lightning.losses.nll import NLL

        if curve.objective == "retain_nll":
            return NLL(split="retain")
        return build(self.curve_objective_spec(curve), UnlearningLoss, f"curve '{curve.name}' objective")

    def curve_dir(self, curve: CurveSpec) -> Path:
        return self.root / "curves" / curve.name

    def curve_module(self, curve: CurveSpec) -> Any:
        """The curve's :class:`CurveModule` as built for its stage (control points at their initial values)."""
        from mcu_lightning.curves import CurveShape, TSampler
        from mcu_lightning.modules.curve import CurveModule

        shape, init, fixed_bends = path_shape(curve)
        init = self.model_path(init) if init in BUILTIN_NODES else init
        lora = self.is_lora_curve(curve)
        training = curve.train
        return CurveModule(
            endpoints=[self.model_path(node) for node in curve.endpoints],
            shape=build(shape, CurveShape, f"curve '{curve.name}' shape"),
            init=init,
            include=curve.include,
            objective=self.curve_objective(curve),
            reference=self.model_path("base"),
            t_sampler=build(curve.t_sampler, TSampler, f"curve '{curve.name}' t_sampler"),
            l2=curve.l2,
            eval_ts=self.study.evaluation.eval_ts,
            bn_batches=self.study.evaluation.bn_batches,
            seed=curve.seed,
            optimizer=optimizer_factory(training.optimizer),
            lr_scheduler=training.lr_scheduler,
            warmup_steps=training.warmup_steps,
            suite=self.suite(with_oracle=True),
            output_dir=str(self.curve_dir(curve)),
            base=self.model_path("base") if lora else None,
            space=curve.space,
            dtype=curve.dtype,
            gradient_checkpointing=curve.gradient_checkpointing,
            probes=self.probes(),
            fixed_bends=fixed_bends,
        )

    def run_curve(self, curve: CurveSpec) -> dict[str, Any]:
        """Fit the curve, then test it at every t; a training-free path (``is_path``) is only tested."""
        from lightning.pytorch import seed_everything

        seed_everything(curve.seed, workers=True)
        module = self.curve_module(curve)
        if is_path(curve):
            if module.has_free_points:  # a shape the spec check did not know: say so instead of not training it
                raise StudyError(f"curve '{curve.name}' has free points to fit; give train settings, not a path")
            return self.test_only(self.curve_dir(curve), module)
        datamodule = self.datamodule({"seed": curve.seed}, curve.train.batch_size)
        return self.fit_and_test(self.curve_dir(curve), module, datamodule, curve.train, final_checkpoint=True)

    def retest_curve(self, curve: CurveSpec) -> dict[str, Any]:
        """The curve's test on its fitted control points (``checkpoints/last.ckpt``, the end of its fit)."""
        module = self.curve_module(curve)
        return self.test_only(self.curve_dir(curve), module, self.curve_dir(curve) / "checkpoints" / "last.ckpt")

    def is_lora_curve(self, curve: CurveSpec) -> bool:
        """Whether the curve connects two LoRA endpoints, or the base (the zero adapter) and a LoRA endpoint: then it
        lives in LoRA space on the base."""
        loras = {e.name: e.lora is not None for e in self.study.endpoints}
        ends = [node for node in curve.endpoints if node != "base"]
        return bool(ends) and all(loras.get(node, False) for node in ends)
