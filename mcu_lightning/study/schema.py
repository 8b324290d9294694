"""The study's YAML as typed dataclasses, so ``--print_config`` and validation come from jsonargparse.

base -> oracle -> endpoints (unlearning runs) -> curves (fit + test at every t) -> report
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from mcu_lightning.core import curve_spec
from mcu_lightning.core.errors import InputError

BUILTIN_NODES = ("base", "oracle")


class StudyError(InputError):
    """A study that cannot run as written (found before any stage starts)."""


@dataclass
class Training:
    """How long and with what a stage trains; ``optimizer`` is a class spec (``class_path`` + ``init_args``).

    The length is ``max_steps`` or ``max_epochs``, whichever the config gives (giving both is refused: the one reached
    first would silently win); neither: one epoch (a curve: :data:`CURVE_DEFAULT_STEPS` steps).
    """

    max_epochs: int | None = None
    max_steps: int = -1
    optimizer: dict[str, Any] | None = None
    lr_scheduler: str = "constant"
    warmup_steps: float = 0
    batch_size: int | None = None


@dataclass
class ModelStage:
    """The base or the oracle: an existing model (``path``, only tested), or trained here from ``model`` on
    ``split`` (default ``full`` for the base, ``retain`` for the oracle; ``a+b`` joins splits)."""

    path: str | None = None
    model: dict[str, Any] | None = None
    split: str | None = None
    train: Training = field(default_factory=Training)


@dataclass
class Endpoint:
    """One unlearning run from the base model.

    ``seeds``: run it once per seed (stages ``<name>-s<seed>``, see :mod:`mcu_lightning.study.seeds`); overrides the
    study's ``seeds`` for this endpoint.

    ``during_training``: init args of :class:`~mcu_lightning.callbacks.EvaluateDuringTraining` (``score``,
    ``every_n_epochs``, ...), the suite run while unlearning; ``select: best`` makes the endpoint (its export, its
    test, the curves from it) the checkpoint best by that score instead of the last one.
    """

    name: str
    loss: dict[str, Any]
    train: Training = field(default_factory=Training)
    curriculum: dict[str, Any] | None = None
    superloss: bool = False
    seed: int = 0
    lora: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    during_training: dict[str, Any] | None = None
    select: str = "last"
    seeds: list[int] | None = None


def endpoint_config(endpoint: Endpoint) -> dict[str, Any]:
    """The endpoint's fingerprinted config; evaluation during training is left out while unset, so the stages of
    studies written before it existed keep their fingerprints."""
    config = asdict(endpoint)
    del config["seeds"]  # replicas carry their own ``seed``; the list only names them
    if endpoint.during_training is None and endpoint.select == "last":
        del config["during_training"], config["select"]
    return config


@dataclass
class EnsembleSpec:
    """An ensemble of points of a curve, evaluated by the study's suite like one model: ``points`` evenly spaced
    t on [0, 1] (endpoints included) or the given ``ts``."""

    name: str
    points: int | None = None
    ts: list[float] | None = None


@dataclass
class PlaneSpec:
    """The metric plane through a three-bend curve's endpoints and control point: a ``points x points`` grid, the
    suite's ``metrics`` at each grid point (each costs one evaluation of the whole suite, its generation included;
    only the QA suite's own ``rouge: false``, in ``evaluation.suite``'s ``init_args``, drops the generation, for
    every stage)."""

    metrics: list[str]
    points: int = 5
    margin: float = 0.2


#: Training-free paths by name: ``line`` (Linear), ``slerp`` (SLERP per tensor), ``base`` (the polychain
#: endpoint 0 -> base -> endpoint 1, its bend fixed at the base).
PATHS = ("line", "slerp", "base")


@dataclass
class CurveSpec:
    """A curve between two nodes (endpoint names, ``base`` or ``oracle``).

    Between two LoRA endpoints the curve lives in LoRA space on the shared base (``space``: ``factors`` or
    ``delta``); ``init`` is then ``linear`` (a LoRA endpoint has no full-weight counterpart to start from).

    ``path`` (``line``, ``slerp`` or ``base``) makes it a training-free path in place of ``shape`` and ``init``: it is
    only tested (no fit, no checkpoint), and ``train`` must stay unset. So is a curve whose ``shape`` has
    no free points (``Linear``, ``Slerp``) or whose ``fixed_bends`` keeps its interior bends at ``init``.

    What a study does with the curve once tested, each a stage of its own (so adding one never refits the curve):
    ``ensembles`` (:class:`EnsembleSpec`, rows of the endpoint table), ``plane`` (:class:`PlaneSpec`, three-bend
    curves only) and ``export_best`` (metric names: the best interior t of the test grid by the metric's direction,
    exported as a model folder).
    """

    name: str
    endpoints: list[str]
    shape: dict[str, Any] = field(
        default_factory=lambda: {"class_path": "mcu_lightning.curves.Bezier", "init_args": {"num_bends": 3}}
    )
    init: str = "linear"
    t_sampler: dict[str, Any] = field(default_factory=lambda: {"class_path": "mcu_lightning.curves.Uniform"})
    objective: str | dict[str, Any] = "retain_nll"
    include: str | None = None
    space: str = "factors"
    dtype: str | None = None
    gradient_checkpointing: bool = False
    l2: float = 0.0
    seed: int = 0
    train: Training = field(default_factory=Training)
    path: str | None = None
    fixed_bends: bool = False
    ensembles: list[EnsembleSpec] = field(default_factory=list)
    plane: PlaneSpec | None = None
    export_best: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # the default length applies only when the config gives none: a curve that sets max_epochs trains for them
        if isinstance(self.train, Training) and self.train.max_steps == -1 and self.train.max_epochs is None:
            self.train = replace(self.train, max_steps=CURVE_DEFAULT_STEPS)


#: A curve's training length when its ``train`` gives neither ``max_steps`` nor ``max_epochs``.
CURVE_DEFAULT_STEPS = 100

#: What a curve does once tested: stages of their own, never part of the curve's fingerprint.
CURVE_USES = ("ensembles", "plane", "export_best")


def path_shape(curve: CurveSpec) -> tuple[dict[str, Any], str, bool]:
    """The curve's ``shape`` spec, ``init`` and ``fixed_bends`` as built (``path`` resolved)."""
    if curve.path == "line":
        return {"class_path": "mcu_lightning.curves.Linear"}, "linear", False
    if curve.path == "slerp":
        return {"class_path": "mcu_lightning.curves.Slerp"}, "linear", False
    if curve.path == "base":
        return {"class_path": "mcu_lightning.curves.PolyChain", "init_args": {"num_bends": 3}}, "base", True
    return curve.shape, curve.init, curve.fixed_bends


def shape_bends(curve: CurveSpec) -> int:
    """How many bends the curve has (endpoints included), from its spec (``path`` resolved)."""
    return curve_spec.shape_bends(curve.path, curve.shape)


def is_path(curve: CurveSpec) -> bool:
    """A training-free path (:func:`mcu_lightning.core.curve_spec.is_training_free`): ``path`` set, ``fixed_bends``,
    or a shape of two bends (Linear, Slerp) only."""
    return curve_spec.is_training_free(curve.path, curve.fixed_bends, curve.shape)


def curve_config(curve: CurveSpec) -> dict[str, Any]:
    """The curve's fingerprinted config: its uses (ensembles, plane, export_best) are stages of their own and left
    out; ``path`` and ``fixed_bends`` only while set, so curves of studies written before them keep their
    fingerprints; a path's ``train`` is left out (it is never trained)."""
    config = asdict(curve)
    for key in CURVE_USES:
        del config[key]
    if curve.path is None:
        del config["path"]
    if not curve.fixed_bends:
        del config["fixed_bends"]
    if is_path(curve):
        config["train"] = None
    return config


@dataclass
class Merge:
    """A task-vector merge of endpoints relative to the base (``method``: ``task_arithmetic`` with ``scale``, or
    ``ties`` with ``density`` and ``scale``): one model, tested like an endpoint (a row of the endpoint table)."""

    name: str
    endpoints: list[str]
    method: str = "task_arithmetic"
    scale: float = 1.0
    density: float = 0.2


MERGE_METHODS = ("task_arithmetic", "ties")


@dataclass
class Evaluation:
    """The metric suite (a class spec), the t grid, and robustness probes (class specs of ``mcu_lightning.probes``,
    run by every stage's test; on a curve at every ``every``-th t)."""

    suite: dict[str, Any]
    eval_ts: int = 31
    bn_batches: int | None = None
    probes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Study:
    """A whole MCU study. ``data`` is a datamodule class spec; ``trainer`` holds Trainer arguments for every stage.

    ``seed`` seeds the base and the oracle; ``seeds`` runs every endpoint and curve once per seed (stages named
    ``<name>-s<seed>``, one study folder, the report aggregates over seeds; see :mod:`mcu_lightning.study.seeds`).
    """

    name: str
    data: dict[str, Any]
    evaluation: Evaluation
    base: ModelStage
    oracle: ModelStage = field(default_factory=ModelStage)
    endpoints: list[Endpoint] = field(default_factory=list)
    curves: list[CurveSpec] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    output_dir: str = "runs"
    seed: int = 0
    seeds: list[int] | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    checkpoint_every_n_steps: int | None = 20
    guard: dict[str, Any] | None = field(
        default_factory=lambda: {"class_path": "mcu_lightning.callbacks.DivergenceGuard", "init_args": {}}
    )


def study_parser() -> ArgumentParser:
    # exit_on_error=False: a rejected value is one `error:` line from the CLI, not jsonargparse's usage dump
    parser = ArgumentParser(
        prog="mcu experiment", description="Run a whole MCU study from one YAML.", exit_on_error=False
    )
    parser.add_argument("--config", action=ActionConfigFile, help="the study YAML")
    parser.add_class_arguments(Study, as_group=False, fail_untyped=False)
    parser.add_argument("--only", type=list[str] | None, default=None, help="run only these stages (and report)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run every stage at a reduced size (2 steps a training, 3 t a curve, short probes) to check that the "
        "config runs end to end; the numbers mean nothing (mcu_lightning.study.smoke); use another output_dir",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="rerun the stages whose config changed since they ran, and every stage after them",
    )
    parser.add_argument(
        "--yes", action="store_true", help="run an evaluation above the bound of suite passes a study makes unasked"
    )
    from mcu_lightning.study.help import describe

    return describe(parser)


def _keep_specs(built: Any, parsed: Any) -> Any:
    """``built`` (instantiated) with every object inside a free-form dict taken back from ``parsed`` as its spec.

    jsonargparse's ``instantiate`` builds a class spec nested in a ``dict[str, Any]`` field (``curriculum: {pacing:
    {class_path: ...}}``) into the object; a study keeps specs (they are fingerprinted as JSON and built by the stage
    that uses them), so those dicts stay as written.
    """
    if isinstance(parsed, Namespace):
        parsed = parsed.as_dict()
    if dataclasses.is_dataclass(built) and isinstance(parsed, dict):
        for item in dataclasses.fields(built):
            setattr(built, item.name, _keep_specs(getattr(built, item.name), parsed.get(item.name)))
        return built
    if isinstance(built, list) and isinstance(parsed, list) and len(built) == len(parsed):
        return [_keep_specs(b, p) for b, p in zip(built, parsed, strict=True)]
    if isinstance(built, dict) and isinstance(parsed, dict):
        return {key: _keep_specs(value, parsed.get(key)) for key, value in built.items()}
    if isinstance(built, (str, int, float, bool, type(None), list, tuple, dict)):
        return built
    return copy.deepcopy(parsed)  # an object built from a nested class spec: the spec as parsed


def check_sections(section: Any, where: str = "") -> None:
    """Every section the schema gives keys (``base``, ``evaluation``, an endpoint, its ``train`` ...) is one:
    jsonargparse lets a bare value (``base: 5``) through where a section is optional."""
    for name, hint in typing.get_type_hints(type(section)).items():
        value = getattr(section, name)
        kinds = tuple(k for k in (typing.get_args(hint) or (hint,)) if dataclasses.is_dataclass(k))
        items = value if typing.get_origin(hint) is list and isinstance(value, list) else [value]
        for item in items if kinds else []:
            if item is not None and not isinstance(item, kinds):
                raise StudyError(
                    f"{where}{name}: {item!r} is not a section; give its keys (mcu experiment --help lists them)"
                )
            if item is not None:
                check_sections(item, f"{where}{name}.")


def parse_study(args: Sequence[str]) -> tuple[Study, Namespace]:
    """The study of ``mcu experiment ARGS`` as written, and the parsed namespace with the run's options (``only``,
    ``smoke``, ``rerun``, ``yes``: the command applies them)."""
    parser = study_parser()
    cfg = parser.parse_args(list(args))
    try:
        init = parser.instantiate(cfg)
    except TypeError as err:  # a section of the wrong shape (a list where the schema has keys) that parsing let by
        raise StudyError(f"the study does not fit its schema: {' '.join(str(err).split())}") from err
    study = _keep_specs(Study(**{f: init[f] for f in Study.__dataclass_fields__}), cfg)
    check_sections(study)
    return study, cfg


def check_positive(value: Any, what: str) -> None:
    """A count or size that must be a positive whole number (``None``: not set)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise StudyError(f"{what}={value!r} must be a positive whole number")


def check_training(training: Training, what: str) -> None:
    """Steps, epochs, batch size and learning rate of one stage, checked before any stage runs."""
    for key in ("max_steps", "max_epochs"):
        value = getattr(training, key)
        if value is not None and value < -1:
            raise StudyError(f"{what}.{key}={value} must be -1 (no limit) or at least 0")
    if training.max_steps != -1 and training.max_epochs not in (None, -1):
        raise StudyError(
            f"{what} sets both max_steps={training.max_steps} and max_epochs={training.max_epochs}; the one reached "
            "first would end the stage: give one of them"
        )
    check_positive(training.batch_size, f"{what}.batch_size")
    args = (training.optimizer or {}).get("init_args") or {}
    if not isinstance(args, dict):
        raise StudyError(f"{what}.optimizer.init_args={args!r} must be a mapping of the optimizer's arguments")
    if "lr" in args:
        lr = args["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise StudyError(f"{what}.optimizer.init_args.lr={lr!r} must be a finite number above 0 (e.g. 0.001)")
    if training.warmup_steps < 0 or not math.isfinite(training.warmup_steps):
        raise StudyError(f"{what}.warmup_steps={training.warmup_steps!r} must be 0 or more")


def endpoint_loss_spec(endpoint: Endpoint) -> dict[str, Any]:
    """The endpoint's loss spec as trained (SuperLoss-wrapped when ``superloss``); ``objective: endpoint`` reuses it."""
    if endpoint.superloss:
        return {"class_path": "mcu_lightning.losses.SuperLoss", "init_args": {"loss": endpoint.loss}}
    return endpoint.loss


def curve_objective_spec(curve: CurveSpec, endpoints: Sequence[Endpoint]) -> Any:
    """The curve's objective as a class spec (``endpoint``: its first unlearning endpoint's loss as trained;
    ``retain_nll``: NLL on the retain set)."""
    if curve.objective == "retain_nll":
        return {"class_path": "mcu_lightning.losses.NLL", "init_args": {"split": "retain"}}
    if curve.objective == "endpoint":
        first = curve_spec.objective_endpoint(curve.endpoints, {e.name: e for e in endpoints})
        if first is None:
            raise StudyError(
                f"curve '{curve.name}': objective 'endpoint' needs an unlearning endpoint among {curve.endpoints}; "
                "use retain_nll or a loss spec"
            )
        return endpoint_loss_spec(first)
    return curve.objective
