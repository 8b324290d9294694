"""A study checked as written, before any stage runs: names, links between stages, class paths, settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcu_lightning.study.build import check_class_path
from mcu_lightning.study.schema import BUILTIN_NODES, Study, Training, check_positive, check_training


def validate_study(study: Study, probes: Callable[[], list[Any]]) -> None:
    """Raise ``ValueError`` naming the first problem of ``study`` and its fix (``probes`` builds its probes)."""
    if study.base.path is None and study.base.model is None:
        raise ValueError("base: give `path` (an existing model) or `model` (a class spec to train on `full`)")
    names = [endpoint.name for endpoint in study.endpoints]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"endpoint names must be unique; repeated: {sorted(duplicates)}")
    reserved = set(names) & set(BUILTIN_NODES)
    if reserved:
        raise ValueError(f"endpoint names {sorted(reserved)} are reserved for the base and oracle models")
    for endpoint in study.endpoints:
        if endpoint.select not in ("last", "best"):
            raise ValueError(f"endpoint '{endpoint.name}': select={endpoint.select!r}; use 'last' or 'best'")
        if endpoint.select == "best" and not endpoint.during_training:
            raise ValueError(
                f"endpoint '{endpoint.name}': select: best needs during_training "
                "(e.g. {score: {forget_quality: 0.5, model_utility: 0.5}}) to know what is best"
            )
    known = set(names) | set(BUILTIN_NODES)
    for curve in study.curves:
        if len(curve.endpoints) != 2:
            raise ValueError(f"curve '{curve.name}' names {len(curve.endpoints)} endpoints; a curve connects two")
        for node in curve.endpoints:
            if node not in known:
                raise ValueError(
                    f"curve '{curve.name}' names endpoint '{node}' that is not defined; "
                    f"defined: {', '.join(sorted(known))}"
                )
        if curve.endpoints[0] == curve.endpoints[1]:
            raise ValueError(f"curve '{curve.name}' connects '{curve.endpoints[0]}' to itself")
        loras = {e.name: e.lora is not None for e in study.endpoints}
        kinds = {loras.get(node, False) for node in curve.endpoints}
        if len(kinds) == 2:
            raise ValueError(
                f"curve '{curve.name}' connects a LoRA endpoint to a full-weight one {curve.endpoints}; "
                "connect two LoRA endpoints (a LoRA-space curve) or two full-weight models"
            )
        if kinds == {True} and curve.init != "linear" and not Path(curve.init).is_dir():
            raise ValueError(
                f"curve '{curve.name}' between LoRA endpoints starts at init={curve.init!r}; "
                "use init: linear or a third adapter folder"
            )
        if curve.space not in ("factors", "delta"):
            raise ValueError(f"curve '{curve.name}': space={curve.space!r}; use factors or delta")
    for path, what in ((study.base.path, "base.path"), (study.oracle.path, "oracle.path")):
        if path is not None and not Path(path).exists() and "/" in path and path.startswith((".", "/")):
            raise ValueError(f"{what} '{path}' does not exist; give a save_pretrained folder or a Hub name")
    check_class_path(study.data, "data")
    if study.guard is not None:
        check_class_path(study.guard, "guard")
    check_class_path(study.evaluation.suite, "evaluation.suite")
    for i, spec in enumerate(study.evaluation.probes):
        check_class_path(spec, f"evaluation.probes[{i}]")
    from mcu_lightning.probes import check_probes

    check_probes(probes())  # bad settings and repeated names fail before any stage runs
    if study.base.model is not None:
        check_class_path(study.base.model, "base.model")
    for endpoint in study.endpoints:
        check_class_path(endpoint.loss, f"endpoint '{endpoint.name}' loss")
        check_class_path(endpoint.train.optimizer, f"endpoint '{endpoint.name}' optimizer")
    for curve in study.curves:
        for spec, what in ((curve.shape, "shape"), (curve.t_sampler, "t_sampler"), (curve.objective, "objective")):
            check_class_path(spec, f"curve '{curve.name}' {what}")
    for training, what in trainings(study):
        check_training(training, what)
    for key in ("batch_size", "eval_batch_size"):
        check_positive((study.data.get("init_args") or {}).get(key), f"data.init_args.{key}")
    if study.evaluation.eval_ts is not None and isinstance(study.evaluation.eval_ts, int):
        check_positive(study.evaluation.eval_ts, "evaluation.eval_ts")
    check_positive(study.checkpoint_every_n_steps, "checkpoint_every_n_steps")


def trainings(study: Study) -> list[tuple[Training, str]]:
    """Every stage's training settings, named as in the YAML."""
    found = [(study.base.train, "base.train"), (study.oracle.train, "oracle.train")]
    found += [(e.train, f"endpoint '{e.name}' train") for e in study.endpoints]
    return found + [(c.train, f"curve '{c.name}' train") for c in study.curves]
