"""``mcu experiment``: a whole MCU study from one YAML, stage by stage through the Lightning Trainer.

    base -> oracle -> endpoints (unlearning runs) -> curves (fit + test at every t) -> report

Each stage writes under ``runs/<name>/<stage>/`` (TensorBoard logs, checkpoints, exported model, test
metrics) and a ``stage.json`` marker once complete; a rerun skips complete stages and resumes an
interrupted one from its ``last.ckpt``. The report goes to ``runs/<name>/report/`` (see ``report.py``).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

STAGE_MARKER = "stage.json"
MODEL_DIR = "model"
TEST_METRICS = "test_metrics.json"
BUILTIN_NODES = ("base", "oracle")


class StudyError(ValueError):
    """A study that cannot run as written (found before any stage starts)."""


# -- the study's YAML, as typed dataclasses (so --print_config and validation come from jsonargparse) -----------------
@dataclass
class Training:
    """How long and with what a stage trains; ``optimizer`` is a class spec (``class_path`` + ``init_args``)."""

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
    """One unlearning run from the base model."""

    name: str
    loss: dict[str, Any]
    train: Training = field(default_factory=Training)
    curriculum: dict[str, Any] | None = None
    superloss: bool = False
    seed: int = 0
    lora: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class CurveSpec:
    """A curve between two nodes (endpoint names, ``base`` or ``oracle``).

    Between two LoRA endpoints the curve lives in LoRA space on the shared base (``space``: ``factors`` or
    ``delta``); ``init`` is then ``linear`` (a LoRA endpoint has no full-weight counterpart to start from).
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
    train: Training = field(default_factory=lambda: Training(max_steps=100))


@dataclass
class Evaluation:
    """The metric suite (a class spec) and the t grid."""

    suite: dict[str, Any]
    eval_ts: int = 31
    bn_batches: int | None = None


@dataclass
class Study:
    """A whole MCU study. ``data`` is a datamodule class spec; ``trainer`` holds Trainer arguments for every stage."""

    name: str
    data: dict[str, Any]
    evaluation: Evaluation
    base: ModelStage
    oracle: ModelStage = field(default_factory=ModelStage)
    endpoints: list[Endpoint] = field(default_factory=list)
    curves: list[CurveSpec] = field(default_factory=list)
    output_dir: str = "runs"
    seed: int = 0
    trainer: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    checkpoint_every_n_steps: int | None = 20
    guard: dict[str, Any] | None = field(
        default_factory=lambda: {"class_path": "mcu_lightning.callbacks.DivergenceGuard", "init_args": {}}
    )


def study_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="mcu experiment", description="Run a whole MCU study from one YAML.")
    parser.add_argument("--config", action=ActionConfigFile, help="the study YAML")
    parser.add_class_arguments(Study, as_group=False, fail_untyped=False)
    parser.add_argument("--only", type=list[str] | None, default=None, help="run only these stages (and report)")
    return parser


def parse_study(args: Sequence[str]) -> tuple[Study, Namespace]:
    parser = study_parser()
    cfg = parser.parse_args(list(args))
    init = parser.instantiate(cfg)
    study = Study(**{f: init[f] for f in Study.__dataclass_fields__})
    return study, cfg


# -- class specs -----------------------------------------------------------------------------------------------------
def build(spec: Any, base_type: type, what: str) -> Any:
    """Instantiate a ``{class_path, init_args}`` spec (nested specs too) checked against ``base_type``."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--obj", type=base_type)
    try:
        cfg = parser.parse_object({"obj": spec})
    except Exception as err:  # jsonargparse says which class path or argument is wrong
        raise ValueError(f"{what}: cannot build {spec!r}: {err}") from err
    return parser.instantiate(cfg).obj


def check_class_path(spec: Any, what: str) -> None:
    """Fail early, with close matches, when a class path does not import."""
    from mcu_lightning.registry import resolve_class_path

    if isinstance(spec, dict) and "class_path" in spec:
        resolve_class_path(spec["class_path"], what)
        for value in (spec.get("init_args") or {}).values():
            check_class_path(value, what)


def optimizer_factory(spec: dict[str, Any] | None) -> Callable[..., Any]:
    """``params -> optimizer`` from a class spec (a bare name means ``torch.optim.<name>``; default AdamW 1e-3)."""
    from lightning.pytorch.cli import instantiate_class

    spec = spec or {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}}
    if "." not in spec["class_path"]:
        spec = {**spec, "class_path": f"torch.optim.{spec['class_path']}"}
    return partial(instantiate_class, init=spec)


# -- stages ------------------------------------------------------------------------------------------------------------
@dataclass
class Stage:
    """One unit of work: a directory, a kind, and the function that runs it."""

    name: str
    kind: str
    directory: Path
    run: Callable[[], dict[str, Any]]
    depends: list[str] = field(default_factory=list)

    @property
    def marker(self) -> Path:
        return self.directory / STAGE_MARKER

    @property
    def complete(self) -> bool:
        return self.marker.is_file()


class StudyRunner:
    """Plans the stages of a study and runs those that are not complete."""

    def __init__(self, study: Study, console: Any = None) -> None:
        self.study = study
        self.root = Path(study.output_dir) / study.name
        self.console = console
        self.validate()

    # paths
    def node_dir(self, node: str) -> Path:
        if node in BUILTIN_NODES:
            return self.root / node
        return self.root / "endpoints" / node

    def model_path(self, node: str) -> str:
        stage = self.study.base if node == "base" else self.study.oracle if node == "oracle" else None
        if stage is not None and stage.path is not None:
            return stage.path
        return str(self.node_dir(node) / MODEL_DIR)

    def oracle_metrics(self) -> str:
        """The oracle's test JSON (per-sample truth ratios, MIA scores): forget quality and privleak need it."""
        return str(self.node_dir("oracle") / TEST_METRICS)

    # validation before any training
    def validate(self) -> None:
        study = self.study
        if study.base.path is None and study.base.model is None:
            raise ValueError("base: give `path` (an existing model) or `model` (a class spec to train on `full`)")
        names = [endpoint.name for endpoint in study.endpoints]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"endpoint names must be unique; repeated: {sorted(duplicates)}")
        reserved = set(names) & set(BUILTIN_NODES)
        if reserved:
            raise ValueError(f"endpoint names {sorted(reserved)} are reserved for the base and oracle models")
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
        if study.base.model is not None:
            check_class_path(study.base.model, "base.model")
        for endpoint in study.endpoints:
            check_class_path(endpoint.loss, f"endpoint '{endpoint.name}' loss")
            check_class_path(endpoint.train.optimizer, f"endpoint '{endpoint.name}' optimizer")
        for curve in study.curves:
            for spec, what in ((curve.shape, "shape"), (curve.t_sampler, "t_sampler"), (curve.objective, "objective")):
                check_class_path(spec, f"curve '{curve.name}' {what}")

    # building blocks
    def datamodule(self, overrides: dict[str, Any] | None = None, batch_size: int | None = None) -> Any:
        from lightning.pytorch import LightningDataModule

        spec = copy.deepcopy(self.study.data)
        spec.setdefault("init_args", {})
        spec["init_args"].update(overrides or {})
        if batch_size is not None:
            spec["init_args"]["batch_size"] = batch_size
        return build(spec, LightningDataModule, "data")

    def suite(self, with_oracle: bool) -> Any:
        from mcu_lightning.metrics.suite import MetricSuite

        spec = copy.deepcopy(self.study.evaluation.suite)
        if with_oracle:
            spec.setdefault("init_args", {})["oracle"] = self.oracle_metrics()
        return build(spec, MetricSuite, "evaluation.suite")

    def trainer(self, directory: Path, training: Training, extra_callbacks: Sequence[Any] = ()) -> Any:
        from lightning.pytorch import Trainer
        from lightning.pytorch.callbacks import ModelCheckpoint
        from lightning.pytorch.loggers import TensorBoardLogger

        kwargs = {"accelerator": "auto", "devices": 1, "enable_model_summary": False, "num_sanity_val_steps": 0}
        kwargs.update(self.study.trainer)
        kwargs.update(max_epochs=training.max_epochs, max_steps=training.max_steps)
        if training.max_epochs is None and training.max_steps == -1:
            kwargs["max_epochs"] = 1
        from mcu_lightning.callbacks.checkpoint import AtomicCheckpointIO

        every = self.study.checkpoint_every_n_steps  # mid-epoch checkpoints: a killed stage resumes where it was
        callbacks = [
            ModelCheckpoint(dirpath=directory / "checkpoints", save_last=True, save_top_k=0, every_n_train_steps=every)
        ]
        kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        if self.study.progress:
            from lightning.pytorch.callbacks import RichProgressBar

            callbacks.append(RichProgressBar(leave=False))
        kwargs["enable_progress_bar"] = self.study.progress
        kwargs.setdefault("limit_val_batches", 0)
        return Trainer(
            default_root_dir=str(directory),
            logger=TensorBoardLogger(save_dir=str(directory), name="", version=""),
            callbacks=[*callbacks, *extra_callbacks],
            **kwargs,
        )

    def fit_and_test(
        self, directory: Path, module: Any, datamodule: Any, training: Training, extra_callbacks: Sequence[Any] = ()
    ) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        last = directory / "checkpoints" / "last.ckpt"
        trainer = self.trainer(directory, training, extra_callbacks)
        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.is_file() else None)
        fit_s = time.perf_counter() - started
        test_datamodule = self.datamodule() if getattr(datamodule, "finetune_split", None) else datamodule
        trainer.test(module, datamodule=test_datamodule, verbose=False)
        return {"fit_seconds": fit_s, "test_seconds": time.perf_counter() - started - fit_s}

    # the stages
    def plan(self) -> list[Stage]:
        study = self.study
        stages: list[Stage] = []
        for node in ("oracle", "base"):  # the oracle first: the base's test reads its per-sample values
            stages.append(Stage(node, node, self.node_dir(node), partial(self.run_model_stage, node)))
        for endpoint in study.endpoints:
            stages.append(
                Stage(
                    endpoint.name,
                    "endpoint",
                    self.node_dir(endpoint.name),
                    partial(self.run_endpoint, endpoint),
                    depends=["base", "oracle"],
                )
            )
        for curve in study.curves:
            stages.append(
                Stage(
                    curve.name,
                    "curve",
                    self.root / "curves" / curve.name,
                    partial(self.run_curve, curve),
                    depends=list(curve.endpoints),
                )
            )
        return stages

    def run_model_stage(self, node: str) -> dict[str, Any]:
        """The base (trained on ``full``) or the oracle (on ``retain``); an existing ``path`` is only tested."""
        from lightning.pytorch import seed_everything
        from torch import nn

        from mcu_lightning.modules.finetune import FineTuneModule

        stage = self.study.base if node == "base" else self.study.oracle
        directory = self.node_dir(node)
        suite = self.suite(with_oracle=node != "oracle")
        if stage.path is not None:  # read only: test it, export nothing
            module = FineTuneModule(stage.path, suite=suite, output_dir=str(directory), export=False)
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
        )
        split = stage.split or ("full" if node == "base" else "retain")
        datamodule = self.datamodule({"finetune_split": split}, training.batch_size)
        return self.fit_and_test(directory, module, datamodule, training)

    def test_only(self, directory: Path, module: Any) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        self.trainer(directory, Training()).test(module, datamodule=self.datamodule(), verbose=False)
        return {"test_seconds": time.perf_counter() - started}

    def run_endpoint(self, endpoint: Endpoint) -> dict[str, Any]:
        from lightning.pytorch import seed_everything

        from mcu_lightning.losses.base import UnlearningLoss
        from mcu_lightning.models.hf import LoraSpec
        from mcu_lightning.modules.unlearn import UnlearningModule

        seed_everything(endpoint.seed, workers=True)
        loss = build(endpoint_loss_spec(endpoint), UnlearningLoss, f"endpoint '{endpoint.name}' loss")
        module = UnlearningModule(
            self.model_path("base"),
            loss,
            lora=LoraSpec(**endpoint.lora) if endpoint.lora is not None else None,
            optimizer=optimizer_factory(endpoint.train.optimizer),
            lr_scheduler=endpoint.train.lr_scheduler,
            warmup_steps=endpoint.train.warmup_steps,
            suite=self.suite(with_oracle=True),
            output_dir=str(self.node_dir(endpoint.name)),
        )
        overrides = {"seed": endpoint.seed, **endpoint.data}
        if endpoint.curriculum is not None:
            overrides["curriculum"] = endpoint.curriculum
        datamodule = self.datamodule(overrides, endpoint.train.batch_size)
        guards = []
        if self.study.guard is not None:  # gradient ascent diverges by design: stop it, keep the last good weights
            from lightning.pytorch import Callback

            guards.append(build(self.study.guard, Callback, "guard"))
        return self.fit_and_test(self.node_dir(endpoint.name), module, datamodule, endpoint.train, guards)

    def curve_objective(self, curve: CurveSpec) -> Any:
        from mcu_lightning.losses.base import UnlearningLoss
        from mcu_lightning.losses.nll import NLL

        if curve.objective == "retain_nll":
            return NLL(split="retain")
        if curve.objective == "endpoint":
            by_name = {e.name: e for e in self.study.endpoints}  # the curve's first unlearning endpoint, in its order
            first = next((by_name[node] for node in curve.endpoints if node in by_name), None)
            if first is None:
                raise ValueError(f"curve '{curve.name}': objective 'endpoint' needs an unlearning endpoint")
            return build(endpoint_loss_spec(first), UnlearningLoss, f"curve '{curve.name}' objective")
        return build(curve.objective, UnlearningLoss, f"curve '{curve.name}' objective")

    def run_curve(self, curve: CurveSpec) -> dict[str, Any]:
        from lightning.pytorch import seed_everything

        from mcu_lightning.curves import CurveShape, TSampler
        from mcu_lightning.modules.curve import CurveModule

        seed_everything(curve.seed, workers=True)
        init = self.model_path(curve.init) if curve.init in BUILTIN_NODES else curve.init
        lora = self.is_lora_curve(curve)
        module = CurveModule(
            endpoints=[self.model_path(node) for node in curve.endpoints],
            shape=build(curve.shape, CurveShape, f"curve '{curve.name}' shape"),
            init=init,
            include=curve.include,
            objective=self.curve_objective(curve),
            reference=self.model_path("base"),
            t_sampler=build(curve.t_sampler, TSampler, f"curve '{curve.name}' t_sampler"),
            l2=curve.l2,
            eval_ts=self.study.evaluation.eval_ts,
            bn_batches=self.study.evaluation.bn_batches,
            seed=curve.seed,
            optimizer=optimizer_factory(curve.train.optimizer),
            lr_scheduler=curve.train.lr_scheduler,
            warmup_steps=curve.train.warmup_steps,
            suite=self.suite(with_oracle=True),
            output_dir=str(self.root / "curves" / curve.name),
            base=self.model_path("base") if lora else None,
            space=curve.space,
            dtype=curve.dtype,
            gradient_checkpointing=curve.gradient_checkpointing,
        )
        datamodule = self.datamodule({"seed": curve.seed}, curve.train.batch_size)
        return self.fit_and_test(self.root / "curves" / curve.name, module, datamodule, curve.train)

    def is_lora_curve(self, curve: CurveSpec) -> bool:
        """Whether the curve connects two LoRA endpoints (then it lives in LoRA space on the base)."""
        loras = {e.name: e.lora is not None for e in self.study.endpoints}
        return all(loras.get(node, False) for node in curve.endpoints)

    # running
    def say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)

    def run(self, only: Sequence[str] | None = None) -> Path:
        from mcu_lightning.atomic import atomic_write
        from mcu_lightning.report import write_report

        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / "study.json", json.dumps(asdict(self.study), indent=2, default=str).encode())
        stages = self.plan()
        for index, stage in enumerate(stages, start=1):
            label = f"[{index}/{len(stages)}] {stage.kind} [bold]{stage.name}[/bold]"
            if only and stage.name not in only:
                continue
            if stage.complete:
                self.say(f"{label}: complete, skipped ({stage.marker})")
                continue
            self.say(f"{label}: running -> {stage.directory}")
            started = time.perf_counter()
            timings = stage.run()
            record = {"stage": stage.name, "kind": stage.kind, "seconds": time.perf_counter() - started, **timings}
            atomic_write(stage.marker, json.dumps(record, indent=2).encode())
            self.say(f"{label}: done in {record['seconds']:.1f} s")
        report = write_report(self.root)
        self.say(f"report: {report}")
        return report


def endpoint_loss_spec(endpoint: Endpoint) -> dict[str, Any]:
    """The endpoint's loss spec as trained (SuperLoss-wrapped when ``superloss``); ``objective: endpoint`` reuses it."""
    if endpoint.superloss:
        return {"class_path": "mcu_lightning.losses.SuperLoss", "init_args": {"loss": endpoint.loss}}
    return endpoint.loss


def run_experiment_cli(args: Sequence[str]) -> Path | None:
    parser = study_parser()
    if any(a == "--print_config" or a.startswith("--print_config=") for a in args):
        cfg = parser.parse_args([a for a in args if not a.startswith("--print_config")])
        print(parser.dump(cfg))
        return None
    study, cfg = parse_study(args)
    from rich.console import Console

    try:
        runner = StudyRunner(study, console=Console(stderr=True))
    except (ValueError, FileNotFoundError) as err:
        raise StudyError(str(err)) from err
    return runner.run(only=cfg.get("only"))


def report_cli(args: Sequence[str]) -> Path:
    parser = ArgumentParser(prog="mcu report", description="Rebuild a study's report from its saved metrics.")
    parser.add_argument("run_dir", type=str, help="runs/<name>: the study's output folder")
    cfg = parser.parse_args(list(args))
    from mcu_lightning.report import write_report

    path = write_report(Path(cfg.run_dir))
    print(path)
    return path
