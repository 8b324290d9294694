"""Every class spec of a study checked against its class before any stage runs, so an unknown or mistyped
``init_args`` key, a Trainer key that ``Trainer`` does not take, or a value a constructor refuses
(``num_bends: 1``) is one line up front instead of a traceback when its stage starts.

Cheap objects without side effects are built as their stage builds them (losses, curve shapes, t samplers,
the guard, the LoRA and during-training settings); models and datamodules, costly or reading files and the Hub,
are only checked against their signature by jsonargparse (unknown keys, wrong types).
"""

from __future__ import annotations

import copy
from typing import Any

from mcu_lightning.study.build import build, check_spec, check_trainer_args
from mcu_lightning.study.schema import (
    Study,
    StudyError,
    curve_objective_spec,
    endpoint_loss_spec,
    path_shape,
)


def built(spec: Any, base_type: type, what: str) -> Any:
    """``build`` during validation: a constructor's refusal of a value (its ``ValueError``) is the user's input."""
    try:
        return build(spec, base_type, what)
    except StudyError:  # jsonargparse's complaint, already named
        raise
    except ValueError as err:  # a constructor's check of its arguments (num_bends: 1)
        raise StudyError(f"{what}: {' '.join(str(err).split())}") from err


def check_specs(study: Study) -> None:
    """Build or signature-check every class spec of ``study`` but the optimizers (``check_optimizer``, with each
    stage's training); raise :class:`StudyError` naming the first bad one."""
    from lightning.pytorch import Callback, LightningDataModule
    from torch import nn

    from mcu_lightning.curves import CurveShape, TSampler
    from mcu_lightning.losses.base import UnlearningLoss

    check_trainer_args(study.trainer, "trainer")
    check_spec(study.data, LightningDataModule, "data")
    for node, stage in (("base", study.base), ("oracle", study.oracle)):
        if stage.model is not None:
            check_spec(stage.model, nn.Module, f"{node}.model")
    if study.guard is not None:
        built(study.guard, Callback, "guard")
    for endpoint in study.endpoints:
        what = f"endpoint '{endpoint.name}'"
        built(endpoint_loss_spec(endpoint), UnlearningLoss, f"{what} loss")
        overrides = {"seed": endpoint.seed, **endpoint.data}
        if endpoint.curriculum is not None:
            overrides["curriculum"] = endpoint.curriculum
        check_spec(with_init_args(study.data, overrides), LightningDataModule, f"{what} data")
        if endpoint.lora is not None:
            _construct(_lora_spec, endpoint.lora, f"{what} lora")
        if endpoint.during_training:
            settings = {**endpoint.during_training, "select": endpoint.select}
            _construct(_during_training, settings, f"{what} during_training")
    for curve in study.curves:
        what = f"curve '{curve.name}'"
        shape, _, _ = path_shape(curve)
        built(shape, CurveShape, f"{what} shape")
        built(curve.t_sampler, TSampler, f"{what} t_sampler")
        built(curve_objective_spec(curve, study.endpoints), UnlearningLoss, f"{what} objective")


def with_init_args(spec: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with ``overrides`` added to its ``init_args`` (as a stage builds its datamodule)."""
    spec = copy.deepcopy(spec)
    spec.setdefault("init_args", {}).update(overrides)
    return spec


def _lora_spec(settings: dict[str, Any]) -> Any:
    from mcu_lightning.models.hf import LoraSpec

    return LoraSpec(**settings)


def _during_training(settings: dict[str, Any]) -> Any:
    from mcu_lightning.callbacks.during_training import EvaluateDuringTraining

    return EvaluateDuringTraining(**settings)


def _construct(make: Any, settings: Any, what: str) -> None:
    if not isinstance(settings, dict):
        raise StudyError(f"{what}: expected a mapping of settings, got {settings!r}")
    try:
        make(settings)
    except (ValueError, TypeError) as err:  # an unknown key (TypeError) or a refused value
        raise StudyError(f"{what}: {' '.join(str(err).split())}") from err
