"""What each kind of training stage runs, one function a kind, each taking the study's
:class:`~mcu_lightning.study.context.StageContext`: the base and oracle (:func:`run_model_stage`), an unlearning
endpoint (:func:`run_endpoint`), a curve (:func:`run_curve`: fit and test, or a training-free path's test). Each has
a ``retest_*`` twin that reruns only the test on the fitted weights (the evaluation alone changed). The stages that
read a tested curve (ensembles, the plane, export_best) and the merges are in :mod:`mcu_lightning.study.uses`;
:class:`~mcu_lightning.study.runner.StudyRunner` plans them all and runs them in order.
"""

from __future__ import annotations

from typing import Any

from mcu_lightning.core.names import CHECKPOINTS_DIR, LAST_CHECKPOINT
from mcu_lightning.study.build import build, optimizer_factory
from mcu_lightning.study.context import StageContext
from mcu_lightning.study.schema import (
    BUILTIN_NODES,
    CurveSpec,
    Endpoint,
    StudyError,
    curve_objective_spec,
    endpoint_loss_spec,
    is_path,
    path_shape,
)


def run_model_stage(context: StageContext, node: str) -> dict[str, Any]:
    """The base (trained on ``full``) or the oracle (on ``retain``); an existing ``path`` is only tested."""
    from lightning.pytorch import seed_everything
    from torch import nn

    from mcu_lightning.modules.finetune import FineTuneModule

    stage = context.study.base if node == "base" else context.study.oracle
    directory = context.node_dir(node)
    suite = context.suite(with_oracle=node != "oracle")
    if stage.path is not None:  # read only: test it, export nothing
        module = FineTuneModule(
            stage.path, suite=suite, output_dir=str(directory), export=False, probes=context.probes()
        )
        return context.test_only(directory, module)
    spec = stage.model or context.study.base.model
    training = stage.train if stage.model is not None or node == "base" else context.study.base.train
    seed_everything(context.study.seed, workers=True)
    module = FineTuneModule(
        build(spec, nn.Module, f"{node}.model"),
        optimizer=optimizer_factory(training.optimizer),
        lr_scheduler=training.lr_scheduler,
        warmup_steps=training.warmup_steps,
        suite=suite,
        output_dir=str(directory),
        # trained from scratch: no weights before it to measure against (a distance would only warn)
        probes=[probe for probe in context.probes() if not probe.needs_references],
    )
    split = stage.split or ("full" if node == "base" else "retain")
    datamodule = context.datamodule({"finetune_split": split}, training.batch_size)
    return context.fit_and_test(directory, module, datamodule, training)


def retest_model_stage(context: StageContext, node: str) -> dict[str, Any]:
    """The test of a trained base or oracle on the weights its fit exported (its evaluation alone changed)."""
    from mcu_lightning.modules.finetune import FineTuneModule

    directory = context.node_dir(node)
    probes = [probe for probe in context.probes() if not probe.needs_references]  # as its first test
    suite = context.suite(with_oracle=node != "oracle")
    module = FineTuneModule(
        context.model_path(node), suite=suite, output_dir=str(directory), export=False, probes=probes
    )
    return context.test_only(directory, module)


def run_endpoint(context: StageContext, endpoint: Endpoint) -> dict[str, Any]:
    """Unlearn from the base with the endpoint's loss, then test it."""
    from lightning.pytorch import seed_everything

    seed_everything(endpoint.seed, workers=True)
    module = endpoint_module(context, endpoint)
    datamodule = endpoint_datamodule(context, endpoint)
    guards = []
    if context.study.guard is not None:  # gradient ascent diverges by design: stop it, keep the last good weights
        from lightning.pytorch import Callback

        guards.append(build(context.study.guard, Callback, "guard"))
    return context.fit_and_test(context.node_dir(endpoint.name), module, datamodule, endpoint.train, guards)


def retest_endpoint(context: StageContext, endpoint: Endpoint) -> dict[str, Any]:
    """The endpoint's test on the weights its fit exported (its evaluation alone changed): the module built as
    for its fit (the base as its probes' reference), the exported weights loaded into it."""
    from mcu_lightning.models.io import load_exported

    module = endpoint_module(context, endpoint, export=False)
    load_exported(module.model, context.model_path(endpoint.name))
    # the data as its fit had it: the module's hyper-parameters (its seed) must agree with the data module's
    return context.test_only(context.node_dir(endpoint.name), module, datamodule=endpoint_datamodule(context, endpoint))


def endpoint_datamodule(context: StageContext, endpoint: Endpoint) -> Any:
    """The endpoint's data module: the study's data with the endpoint's seed, ``data`` and curriculum."""
    overrides = {"seed": endpoint.seed, **endpoint.data}
    if endpoint.curriculum is not None:
        overrides["curriculum"] = endpoint.curriculum
    return context.datamodule(overrides, endpoint.train.batch_size)


def endpoint_module(context: StageContext, endpoint: Endpoint, export: bool = True) -> Any:
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
        context.model_path("base"),
        loss,
        lora=LoraSpec(**endpoint.lora) if endpoint.lora is not None else None,
        optimizer=optimizer_factory(endpoint.train.optimizer),
        lr_scheduler=endpoint.train.lr_scheduler,
        warmup_steps=endpoint.train.warmup_steps,
        suite=context.suite(with_oracle=True),
        output_dir=str(context.node_dir(endpoint.name)),
        probes=context.probes(),
        during_training=during,
        export=export,
        seed=endpoint.seed,
    )


def curve_objective(context: StageContext, curve: CurveSpec) -> Any:
    """The loss the curve's points minimise (:func:`~mcu_lightning.study.schema.curve_objective_spec`)."""
    from mcu_lightning.losses.base import UnlearningLoss
    from mcu_lightning.losses.nll import NLL

    if curve.objective == "retain_nll":
        return NLL(split="retain")
    return build(
        curve_objective_spec(curve, context.study.endpoints), UnlearningLoss, f"curve '{curve.name}' objective"
    )


def curve_module(context: StageContext, curve: CurveSpec) -> Any:
    """The curve's :class:`CurveModule` as built for its stage (control points at their initial values)."""
    from mcu_lightning.curves import CurveShape, TSampler
    from mcu_lightning.modules.curve import CurveModule

    shape, init, fixed_bends = path_shape(curve)
    init = context.model_path(init) if init in BUILTIN_NODES else init
    lora = is_lora_curve(context, curve)
    training = curve.train
    return CurveModule(
        endpoints=[context.model_path(node) for node in curve.endpoints],
        shape=build(shape, CurveShape, f"curve '{curve.name}' shape"),
        init=init,
        include=curve.include,
        objective=curve_objective(context, curve),
        reference=context.model_path("base"),
        t_sampler=build(curve.t_sampler, TSampler, f"curve '{curve.name}' t_sampler"),
        l2=curve.l2,
        eval_ts=context.study.evaluation.eval_ts,
        bn_batches=context.study.evaluation.bn_batches,
        seed=curve.seed,
        optimizer=optimizer_factory(training.optimizer),
        lr_scheduler=training.lr_scheduler,
        warmup_steps=training.warmup_steps,
        suite=context.suite(with_oracle=True),
        output_dir=str(context.curve_dir(curve)),
        base=context.model_path("base") if lora else None,
        space=curve.space,
        dtype=curve.dtype,
        gradient_checkpointing=curve.gradient_checkpointing,
        probes=context.probes(),
        fixed_bends=fixed_bends,
    )


def run_curve(context: StageContext, curve: CurveSpec) -> dict[str, Any]:
    """Fit the curve, then test it at every t; a training-free path (``is_path``) is only tested."""
    from lightning.pytorch import seed_everything

    seed_everything(curve.seed, workers=True)
    module = curve_module(context, curve)
    if is_path(curve):
        if module.has_free_points:  # a shape the spec check did not know: say so instead of not training it
            raise StudyError(f"curve '{curve.name}' has free points to fit; give train settings, not a path")
        return context.test_only(context.curve_dir(curve), module)
    datamodule = context.datamodule({"seed": curve.seed}, curve.train.batch_size)
    return context.fit_and_test(context.curve_dir(curve), module, datamodule, curve.train, final_checkpoint=True)


def retest_curve(context: StageContext, curve: CurveSpec) -> dict[str, Any]:
    """The curve's test on its fitted control points (``checkpoints/last.ckpt``, the end of its fit)."""
    module = curve_module(context, curve)
    return context.test_only(
        context.curve_dir(curve), module, context.curve_dir(curve) / CHECKPOINTS_DIR / LAST_CHECKPOINT
    )


def is_lora_curve(context: StageContext, curve: CurveSpec) -> bool:
    """Whether the curve connects two LoRA endpoints, or the base (the zero adapter) and a LoRA endpoint: then it
    lives in LoRA space on the base."""
    loras = {e.name: e.lora is not None for e in context.study.endpoints}
    ends = [node for node in curve.endpoints if node != "base"]
    return bool(ends) and all(loras.get(node, False) for node in ends)
