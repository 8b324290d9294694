"""A study checked as written, before any stage runs: names, links between stages, class paths, settings."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcu_lightning.study.build import check_class_path, check_optimizer
from mcu_lightning.study.schema import (
    BUILTIN_NODES,
    MERGE_METHODS,
    PATHS,
    CurveSpec,
    Study,
    StudyError,
    Training,
    check_positive,
    check_training,
    is_path,
    shape_bends,
)
from mcu_lightning.study.specs import check_specs

#: A curve's ``train`` as left unset (its default): ignored on a training-free path.
DEFAULT_CURVE_TRAIN = CurveSpec(name="", endpoints=[]).train


def validate_study(study: Study, probes: Callable[[], list[Any]]) -> None:
    """Raise :class:`StudyError` naming the first problem of ``study`` and its fix (``probes`` builds its probes)."""
    if study.base.path is None and study.base.model is None:
        raise StudyError("base: give `path` (an existing model) or `model` (a class spec to train on `full`)")
    check_name(study.name, "study")  # runs/<name>/
    names = [endpoint.name for endpoint in study.endpoints]
    for name in names:
        check_name(name, f"endpoint {name!r}")  # endpoints/<name>/
    for curve in study.curves:
        check_name(curve.name, f"curve {curve.name!r}")  # curves/<name>/ and report/<name>/
    check_unique(names, "endpoint")
    reserved = set(names) & set(BUILTIN_NODES)
    if reserved:
        raise StudyError(f"endpoint names {sorted(reserved)} are reserved for the base and oracle models")
    for endpoint in study.endpoints:
        if endpoint.select not in ("last", "best"):
            raise StudyError(f"endpoint '{endpoint.name}': select={endpoint.select!r}; use 'last' or 'best'")
        if endpoint.select == "best" and not endpoint.during_training:
            raise StudyError(
                f"endpoint '{endpoint.name}': select: best needs during_training "
                "(e.g. {score: {forget_quality: 0.5, model_utility: 0.5}}) to know what is best"
            )
    known = set(names) | set(BUILTIN_NODES)
    for curve in study.curves:
        if len(curve.endpoints) != 2:
            raise StudyError(f"curve '{curve.name}' names {len(curve.endpoints)} endpoints; a curve connects two")
        for node in curve.endpoints:
            if node not in known:
                raise StudyError(
                    f"curve '{curve.name}' names endpoint {node!r} that is not defined; "
                    f"defined: {', '.join(sorted(known))}"
                )
        if curve.endpoints[0] == curve.endpoints[1]:
            raise StudyError(f"curve '{curve.name}' connects '{curve.endpoints[0]}' to itself")
        loras = {e.name: e.lora is not None for e in study.endpoints}
        kinds = {loras.get(node, False) for node in curve.endpoints if node != "base"}  # base: the zero adapter
        if len(kinds) == 2:
            raise StudyError(
                f"curve '{curve.name}' connects a LoRA endpoint to a full-weight one {curve.endpoints}; "
                "connect two LoRA endpoints, or the base and a LoRA endpoint (LoRA-space curves), or two full-weight "
                "models"
            )
        if kinds == {True} and curve.init != "linear" and not Path(curve.init).is_dir():
            raise StudyError(
                f"curve '{curve.name}' between LoRA endpoints starts at init={curve.init!r}; "
                "use init: linear or a third adapter folder"
            )
        if curve.space not in ("factors", "delta"):
            raise StudyError(f"curve '{curve.name}': space={curve.space!r}; use factors or delta")
    for path, what in ((study.base.path, "base.path"), (study.oracle.path, "oracle.path")):
        if path is not None and not Path(path).exists() and "/" in path and path.startswith((".", "/")):
            raise StudyError(f"{what} '{path}' does not exist; give a save_pretrained folder or a Hub name")
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
    for key in ("max_steps", "max_epochs"):
        if key in study.trainer:  # every stage sets its own length (its train), which would silently win
            raise StudyError(f"trainer.{key} would be ignored: give each stage its length (e.g. curves[].train.{key})")
    for key in ("batch_size", "eval_batch_size"):
        check_positive((study.data.get("init_args") or {}).get(key), f"data.init_args.{key}")
    check_eval_ts(study.evaluation.eval_ts)
    check_positive(study.checkpoint_every_n_steps, "checkpoint_every_n_steps")
    check_specs(study)  # every class spec against its class: unknown init_args, Trainer keys, refused values
    for training, what in trainings(study):
        check_optimizer(training.optimizer, f"{what}.optimizer")
    validate_uses(study)


def check_eval_ts(eval_ts: Any) -> None:
    """The curves' t grid (``t_grid``): a whole number of points, at least both endpoints."""
    check_positive(eval_ts, "evaluation.eval_ts")
    if eval_ts < 2:
        raise StudyError(f"evaluation.eval_ts={eval_ts}: a curve grid needs at least 2 points (both endpoints)")


def trainings(study: Study) -> list[tuple[Training, str]]:
    """Every stage's training settings, named as in the YAML."""
    found = [(study.base.train, "base.train"), (study.oracle.train, "oracle.train")]
    found += [(e.train, f"endpoint '{e.name}' train") for e in study.endpoints]
    return found + [(c.train, f"curve '{c.name}' train") for c in study.curves]


def validate_uses(study: Study) -> None:
    """Training-free paths, merges, and what a study does with a tested curve (ensembles, plane, export_best)."""
    stage_names = {e.name for e in study.endpoints} | set(BUILTIN_NODES)
    curve_names = [c.name for c in study.curves]
    check_unique(curve_names, "curve")
    for curve in study.curves:
        what = f"curve '{curve.name}'"
        if curve.path is not None and curve.path not in PATHS:
            raise StudyError(f"{what}: path={curve.path!r}; use one of {', '.join(PATHS)} (or leave it out to fit one)")
        if is_path(curve) and curve.train != DEFAULT_CURVE_TRAIN:
            raise StudyError(f"{what} is a training-free path (nothing to fit); drop its train settings")
        if curve.path is not None and curve.fixed_bends:
            raise StudyError(f"{what}: path={curve.path!r} already fixes the shape; drop fixed_bends")
        if curve.fixed_bends and curve.init == "linear":
            raise StudyError(f"{what}: fixed_bends keeps the bends at init; give init (base, oracle or a model path)")
        if (
            is_path(curve)
            and study.endpoints
            and any(e.lora is not None for e in study.endpoints if e.name in curve.endpoints)
        ):
            raise StudyError(f"{what}: training-free paths need full-weight endpoints (not LoRA)")
        uses = [e.name for e in curve.ensembles]
        if len(set(uses)) != len(uses):
            raise StudyError(f"{what}: ensemble names must be unique; got {uses}")
        for ensemble in curve.ensembles:
            label = f"{what} ensemble '{ensemble.name}'"
            check_name(ensemble.name, f"{what} ensemble {ensemble.name!r}")
            if (ensemble.points is None) == (ensemble.ts is None):
                raise StudyError(f"{label}: give either points (K evenly spaced t) or ts (a list of t), not both")
            if ensemble.points is not None and (
                isinstance(ensemble.points, bool) or not isinstance(ensemble.points, int) or ensemble.points < 2
            ):
                raise StudyError(f"{label}: points={ensemble.points!r} must be a whole number >= 2 (both endpoints)")
            if ensemble.ts is not None and (not ensemble.ts or any(not 0.0 <= t <= 1.0 for t in ensemble.ts)):
                raise StudyError(f"{label}: ts={ensemble.ts} must be a non-empty list of t in [0, 1]")
        if curve.plane is not None:
            shape = shape_bends(curve)
            if shape != 3:
                raise StudyError(
                    f"{what}: the metric plane runs through three bends (Bezier(3), PolyChain(3), path: base); "
                    f"this curve has {shape}"
                )
            check_positive(curve.plane.points, f"{what} plane.points")
            if curve.plane.points < 2:
                raise StudyError(f"{what} plane.points={curve.plane.points} must be at least 2 (a G x G grid)")
            if not curve.plane.metrics:
                raise StudyError(f"{what} plane.metrics is empty; name the metrics to map (e.g. [model_utility])")
            if curve.plane.margin < 0:
                raise StudyError(f"{what} plane.margin={curve.plane.margin} must be 0 or more")
    merge_names = [m.name for m in study.merges]
    check_unique(merge_names, "merge")
    for merge in study.merges:
        what = f"merge '{merge.name}'"
        check_name(merge.name, f"merge {merge.name!r}")
        if merge.method not in MERGE_METHODS:
            raise StudyError(f"{what}: method={merge.method!r}; use one of {', '.join(MERGE_METHODS)}")
        if len(merge.endpoints) < 1:
            raise StudyError(f"{what} names no endpoints; merge the task vectors of one or more endpoints")
        loras = {e.name: e.lora is not None for e in study.endpoints}
        for node in merge.endpoints:
            if node not in loras:
                raise StudyError(
                    f"{what} names endpoint {node!r} that is not an unlearning endpoint; defined: {sorted(loras)}"
                )
            if loras[node]:
                raise StudyError(f"{what}: endpoint '{node}' is a LoRA adapter; merges take full-weight endpoints")
        if not 0.0 < merge.density <= 1.0:
            raise StudyError(f"{what}: density={merge.density} must lie in (0, 1]")
        if not math.isfinite(merge.scale):
            raise StudyError(f"{what}: scale={merge.scale} must be a finite number")
    clash = set(merge_names) & (stage_names | set(curve_names))
    if clash:
        raise StudyError(f"merge names {sorted(clash)} are already names of endpoints or curves; rename the merges")


def check_unique(names: list[str], what: str) -> None:
    """Names of one kind of stage (``endpoint``, ``curve``, ``merge``) must not repeat."""
    repeated = {n for n in names if names.count(n) > 1}
    if repeated:
        raise StudyError(f"{what} names must be unique; repeated: {sorted(repeated)}")


#: The longest name in bytes: a folder name is at most 255 bytes on common file systems, and a name also makes
#: longer ones (``ensemble-<name>``, ``<curve>.png``, ``.<file>.<random>.tmp`` while written).
MAX_NAME_BYTES = 120


def check_name(name: str, what: str) -> None:
    """A name that becomes a folder must be one safe path component: letters (any script), digits, ``-``, ``_``,
    ``+`` and ``.``, not starting with ``.`` (so never ``.`` or ``..``), at most :data:`MAX_NAME_BYTES` bytes in UTF-8.
    No ``/`` or ``\\`` (they nest folders or climb out of the study), no spaces or control characters."""
    safe = isinstance(name, str) and bool(name) and not name.startswith(".")
    if not safe or not all(c.isalnum() or c in "-_.+" for c in name):
        raise StudyError(
            f"{what}: the name {name!r} becomes a folder; use letters, digits, '-', '_', '+' or '.' "
            "(no '/', spaces or control characters, not starting with '.')"
        )
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise StudyError(
            f"{what}: the name {name[:20]!r}... is {len(name.encode())} bytes; a folder name needs at most "
            f"{MAX_NAME_BYTES}"
        )


def validate_metrics(study: Study, suite: Any) -> None:
    """The metrics that ``plane`` and ``export_best`` name must be ones the study's suite reports."""
    for curve in study.curves:
        named = [("plane.metrics", m) for m in (curve.plane.metrics if curve.plane else [])]
        named += [("export_best", m) for m in curve.export_best]
        for key, metric in named:
            try:
                suite.direction(metric)
            except KeyError:
                raise StudyError(
                    f"curve '{curve.name}' {key} names '{metric}', a metric the suite does not report "
                    "(e.g. model_utility, forget_quality, retain/loss)"
                ) from None
        if len(set(curve.export_best)) != len(curve.export_best):
            raise StudyError(f"curve '{curve.name}' export_best repeats a metric: {curve.export_best}")
