"""The study runner: plans a study's stages and runs those that are not complete.

    base -> oracle -> endpoints (unlearning runs) -> curves (fit + test at every t) -> report

Each stage writes under ``runs/<name>/<stage>/`` (TensorBoard logs, checkpoints, exported model, test
metrics) and a ``stage.json`` marker once complete; a rerun skips complete stages and resumes an
interrupted one from its ``last.ckpt``. The report goes to ``runs/<name>/report/`` (see
:mod:`mcu_lightning.report`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from mcu_lightning import __version__
from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.errors import InputError
from mcu_lightning.study import uses
from mcu_lightning.study.build import build
from mcu_lightning.study.cost import check_cost, evaluation_cost
from mcu_lightning.study.identity import (
    StageRecord,
    data_identity,
    fingerprint,
    is_fit_output,
    output_hashes,
    outputs_digest,
    test_fingerprint,
)
from mcu_lightning.study.lock import StudyLock
from mcu_lightning.study.schema import (
    BUILTIN_NODES,
    CurveSpec,
    Study,
    StudyError,
    Training,
    curve_config,
    endpoint_config,
    is_path,
    path_shape,
)
from mcu_lightning.study.seeds import expand_seeds
from mcu_lightning.study.signals import StudyTerminated, TerminationWatch
from mcu_lightning.study.stage import Stage
from mcu_lightning.study.stages import StageRunners
from mcu_lightning.study.status import PLAN_KEY, STUDY_JSON, plan_entries, stage_states
from mcu_lightning.study.validate import validate_metrics, validate_study

MODEL_DIR = "model"
TEST_METRICS = "test_metrics.json"


class StudyRunner(StageRunners):
    """Plans the stages of a study and runs those that are not complete."""

    def __init__(self, study: Study, console: Any = None, yes: bool = False) -> None:
        """``yes``: run an evaluation above :data:`~mcu_lightning.study.cost.MAX_PASSES` suite passes too."""
        self.study, self.seed_groups = expand_seeds(study)  # one endpoint, curve, merge per seed
        self.root = Path(study.output_dir) / study.name
        self.console = console
        self.yes = yes
        self.clock: Any = None  # a console.StudyClock while run() runs: the progress bars' study row
        self.watch: TerminationWatch | None = None  # while run() runs: SIGTERM stops the study (exit 143)
        self.retesting: set[str] = set()  # the stages whose evaluation alone changed: only their test reruns
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
        validate_study(self.study, self.probes)
        suite = self.suite(with_oracle=False)
        validate_metrics(self.study, suite)
        self.cost = evaluation_cost(self.study, len(self.datamodule().eval_splits), suite)
        check_cost(self.cost, self.yes)  # eval_ts: 100000 stops here, not after hours
        self.check_data()

    def check_data(self) -> None:
        """Load every split the study reads from local files (rows checked, files named) before any stage.

        Stages build their own data modules with their overrides; this one only reads, so a QA file with a bad
        row stops the study here rather than when the first stage starts. The embedded generators make valid rows,
        and Hub data is read by the first stage (reading it here would download it before validation ends).
        """
        if not data_identity(self.study.data)["files"]:  # generated or Hub data: each stage loads it as it is
            return
        datamodule = self.datamodule()
        datamodule.setup("fit")  # the forget and retain sets and every evaluation split
        for stage, default in ((self.study.base, "full"), (self.study.oracle, "retain")):
            if stage.path is None and hasattr(datamodule, "load_finetune"):  # what the base and oracle train on
                datamodule.load_finetune(stage.split or default)

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
        # the oracle stage compares the oracle with itself instead of warning that it has no oracle
        spec.setdefault("init_args", {})["oracle"] = self.oracle_metrics() if with_oracle else "self"
        reference = spec["init_args"].get("reference_model")
        if reference in BUILTIN_NODES:  # the reference attack's model: the oracle's or the base's
            if reference == "base" and self.study.base.path is None:
                raise InputError(
                    "evaluation.suite reference_model: base needs base.path (an existing model): the oracle is tested "
                    "before the study trains the base; use reference_model: oracle, or a model folder"
                )
            spec["init_args"]["reference_model"] = self.model_path(reference)
        return build(spec, MetricSuite, "evaluation.suite")

    def probes(self) -> list[Any]:
        from mcu_lightning.probes import Probe

        return [build(spec, Probe, f"evaluation.probes[{i}]") for i, spec in enumerate(self.study.evaluation.probes)]

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
        from mcu_lightning.report.console import LogEveryNStepsFromLoader, StudyProgressBar

        callbacks.append(LogEveryNStepsFromLoader())
        if self.study.progress:
            callbacks.append(StudyProgressBar(self.clock))
        kwargs["enable_progress_bar"] = self.study.progress
        kwargs.setdefault("limit_val_batches", 0)
        from mcu_lightning.callbacks.termination import StopOnTermination

        callbacks.append(StopOnTermination())  # a SIGTERM that came while the Trainer was set up
        return Trainer(
            default_root_dir=str(directory),
            logger=TensorBoardLogger(save_dir=str(directory), name="", version=""),
            callbacks=[*callbacks, *extra_callbacks],
            **kwargs,
        )

    def trainer_call(self) -> Any:
        """Around a Trainer call: a SIGTERM then stops the loop at its next batch instead of where it lands."""
        return self.watch.trainer_call() if self.watch is not None else contextlib.nullcontext()

    def fit_and_test(
        self,
        directory: Path,
        module: Any,
        datamodule: Any,
        training: Training,
        extra_callbacks: Sequence[Any] = (),
        final_checkpoint: bool = False,
    ) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        last = directory / "checkpoints" / "last.ckpt"
        if last.is_file():
            from mcu_lightning.callbacks.checkpoint import checkpoint_problem

            problem = checkpoint_problem(last)
            if problem is not None:  # restart the stage instead of failing on every rerun; keep the file to look at
                last.replace(last.with_name(last.name + ".damaged"))
                self.warn(f"{last} cannot be read ({problem}); moved to {last.name}.damaged, the stage starts over")
        trainer = self.trainer(directory, training, extra_callbacks)
        started = time.perf_counter()
        with self.trainer_call():
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.is_file() else None)
        if self.watch is not None:  # SIGTERM on the last batch: Lightning lets the fit end; test nothing then
            self.watch.check(self.watch.where)
        if final_checkpoint:  # what later stages read back: the weights at the end of the fit, whatever the cadence
            trainer.save_checkpoint(last, weights_only=False)  # the full state, as ModelCheckpoint writes it
        fit_s = time.perf_counter() - started
        test_datamodule = self.datamodule() if getattr(datamodule, "finetune_split", None) else datamodule
        with self.trainer_call():
            trainer.test(module, datamodule=test_datamodule, verbose=False)
        return {"fit_seconds": fit_s, "test_seconds": time.perf_counter() - started - fit_s}

    # the stages
    def plan(self) -> list[Stage]:
        """The stages in the order they run, each with the config section and upstream stages it depends on.

        The oracle comes first (the base's test reads its per-sample values); every test reads the oracle's file,
        so every stage after it depends on it. A stage's ``config`` holds everything of the study YAML that
        determines its result, resolved (an oracle without a model of its own records the base's model and
        training), so two configs that build the same stage give the same fingerprint.
        """
        study = self.study
        shared = {"data": study.data, "trainer": study.trainer}
        stages: list[Stage] = []
        for node in ("oracle", "base"):
            stage = study.base if node == "base" else study.oracle
            resolved = {"path": stage.path}
            if stage.path is None:
                trains_own = stage.model is not None or node == "base"
                resolved.update(
                    model=stage.model or study.base.model,
                    split=stage.split or ("full" if node == "base" else "retain"),
                    train=asdict(stage.train if trains_own else study.base.train),
                    seed=study.seed,
                )
            stages.append(
                Stage(
                    node,
                    node,
                    self.node_dir(node),
                    partial(self.run_model_stage, node),
                    depends=["oracle"] if node == "base" else [],
                    config={**shared, node: resolved},
                    data={"data": study.data, "model": stage.path},
                    retest=partial(self.retest_model_stage, node) if stage.path is None else None,
                )
            )
        for endpoint in study.endpoints:
            stages.append(
                Stage(
                    endpoint.name,
                    "endpoint",
                    self.node_dir(endpoint.name),
                    partial(self.run_endpoint, endpoint),
                    depends=["base", "oracle"],
                    config={**shared, "endpoint": endpoint_config(endpoint), "guard": study.guard},
                    data={"data": study.data},
                    retest=partial(self.retest_endpoint, endpoint),
                )
            )
        for curve in study.curves:
            _, init, _ = path_shape(curve)
            reads = [*curve.endpoints, "base", "oracle"]  # the reference and LoRA base, the suite's oracle file
            if init in BUILTIN_NODES:
                reads.append(init)
            objective = self.curve_objective_spec(curve)
            config = {**shared, "curve": {**curve_config(curve), "objective": objective}}
            stages.append(
                Stage(
                    curve.name,
                    "curve",
                    self.curve_dir(curve),
                    partial(self.run_curve, curve),
                    depends=list(dict.fromkeys(reads)),
                    config=config,
                    data={"data": study.data, "init": curve.init},
                    retest=None if is_path(curve) else partial(self.retest_curve, curve),
                )
            )
        for merge in study.merges:
            stages.append(
                Stage(
                    merge.name,
                    "merge",
                    uses.merge_dir(self, merge),
                    partial(uses.run_merge, self, merge),
                    depends=list(dict.fromkeys([*merge.endpoints, "base", "oracle"])),
                    config={**shared, "merge": asdict(merge)},
                    data={"data": study.data},
                )
            )
        for curve in study.curves:
            stages += self.use_stages(curve, shared)
        for stage in stages:  # how every stage is evaluated: its test, never its fit
            stage.test_config = {"evaluation": asdict(study.evaluation)}
        return stages

    def use_stages(self, curve: CurveSpec, shared: dict[str, Any]) -> list[Stage]:
        """The stages that read the tested curve: its ensembles, its plane, its exported best points."""
        found: list[tuple[str, str, Any, dict[str, Any]]] = [
            (f"ensemble-{spec.name}", "ensemble", partial(uses.run_ensemble, self, curve, spec), asdict(spec))
            for spec in curve.ensembles
        ]
        if curve.plane is not None:
            found.append((uses.PLANE_DIR, "plane", partial(uses.run_plane, self, curve), asdict(curve.plane)))
        for metric in curve.export_best:
            run = partial(uses.run_export_best, self, curve, metric)
            found.append((uses.best_folder_name(metric), "export", run, {"metric": metric}))
        return [
            Stage(
                f"{curve.name}/{folder}",
                kind,
                uses.use_dir(self, curve, folder),
                run,
                depends=[curve.name, "base", "oracle"],
                config={**shared, kind: config, "curve": curve.name},
                data={"data": self.study.data},
            )
            for folder, kind, run, config in found
        ]

    # running
    def say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)

    def warn(self, message: str) -> None:
        if self.console is not None:
            self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    def check_writable(self) -> None:
        """Create the study folder and a probe file in it: an unwritable ``output_dir`` stops before any stage."""
        probe = self.root / ".mcu-write-probe"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise StudyError(
                f"output folder '{self.root}' is not writable ({reason}); set output_dir to a folder you can write"
            ) from None

    def identities(self, stages: Sequence[Stage]) -> dict[str, StageRecord]:
        """The record each stage would get if it ran now: fingerprints chained through the stages it reads."""
        records: dict[str, StageRecord] = {}
        for stage in stages:
            upstream = {name: records[name].fingerprint or "" for name in stage.depends}
            data = data_identity(stage.data)
            fit = fingerprint(stage.kind, stage.config, upstream, data)
            tests = {name: records[name].test_fingerprint or "" for name in stage.depends}
            legacy_upstream = {name: records[name].legacy or "" for name in stage.depends}
            records[stage.name] = StageRecord(
                fit,
                config=stage.config,
                upstream=upstream,
                data=data,
                version=__version__,
                test_fingerprint=test_fingerprint(fit, stage.test_config, tests),
                test_config=stage.test_config,
                # the fingerprint before fit and test were told apart: the evaluation inside the config
                legacy=fingerprint(stage.kind, {**stage.config, **stage.test_config}, legacy_upstream, data),
            )
        return records

    def changed_stages(
        self, stages: Sequence[Stage], now: dict[str, StageRecord]
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """Stages whose folder holds (finished or started) results of another config, with what changed: those
        whose fit changed, and those whose fit holds but whose evaluation changed (they need only a new test)."""
        changed: dict[str, list[str]] = {}
        retest: dict[str, list[str]] = {}
        for stage in stages:
            old = StageRecord.read(stage.marker) or StageRecord.read(stage.partial_marker)
            if old is None:
                if any((stage.directory / "checkpoints").glob("*.ckpt")):
                    changed[stage.name] = ["holds checkpoints with no record of the config they were made with"]
                continue
            record = now[stage.name]
            if not old.same_fit(record):
                changed[stage.name] = old.changes(record)
            elif not old.same_test(record):
                finished = stage.marker.is_file()
                target = retest if stage.retest is not None and finished else changed
                target[stage.name] = old.test_changes(record)
        return changed, retest

    def run(self, only: Sequence[str] | None = None, rerun: bool = False) -> Path:
        """Run the stages that are not complete under this config, then write the report.

        A stage is reused only when its ``stage.json`` fingerprint matches this config and its recorded outputs
        and inputs are still hash-equal; a stage whose outputs are damaged or whose inputs changed runs again.
        A stage made with another config stops the study before anything runs, unless ``rerun`` (then it and
        everything downstream of it run again from scratch). One study at a time holds the folder's lock.
        """
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        from mcu_lightning.report.console import StudyClock
        from mcu_lightning.report.summary import write_report

        self.check_writable()
        self.say(f"evaluation: {self.cost.line()}")
        stages = self.plan()
        with StudyLock(self.root):
            now = self.identities(stages)
            changed, retest = self.changed_stages(stages, now)
            if (changed or retest) and not rerun:
                lines = [f"{label}: {'; '.join(reasons)}" for label, reasons in self._labelled(changed, stages)]
                lines += [
                    f"{label}: {'; '.join(reasons)} (evaluation only: its test reruns, its fit is kept)"
                    for label, reasons in self._labelled(retest, stages)
                ]
                raise StudyError(
                    f"the config differs from the one the results in '{self.root}' were made with:\n  "
                    + "\n  ".join(lines)
                    + "\nrerun with --rerun (reruns the changed stages and everything after them), "
                    "or set a new output_dir"
                )
            for stage in stages:
                if stage.name in changed:
                    shutil.rmtree(stage.directory, ignore_errors=True)
                elif stage.name in retest:
                    self.drop_test_outputs(stage)
            self.retesting = set(retest)
            if retest:
                self.say(
                    f"evaluation changed: {len(retest)} stage(s) rerun only their test on their fitted weights "
                    f"({', '.join(retest)}); nothing is refitted"
                )
            written = asdict(self.study)
            if self.seed_groups:  # which stages are one endpoint or curve run with several seeds (the report's means)
                written["seed_groups"] = self.seed_groups.as_json()
            written[PLAN_KEY] = plan_entries(self.root, stages, now)  # what `mcu report` checks the folders against
            atomic_write(self.root / STUDY_JSON, json.dumps(written, indent=2, default=str).encode())
            by_name = {stage.name: stage for stage in stages}
            only = [name for group in only for name in self.seed_groups.stages(group)] if only else only
            self.clock = StudyClock(total=len(stages))
            with TerminationWatch() as self.watch:
                for index, stage in enumerate(stages, start=1):
                    if only and stage.name not in only:
                        continue
                    self.watch.where = f"during {stage.label}"
                    try:
                        self.run_stage(stage, now[stage.name], by_name, index, len(stages))
                    except SIGTERMException:  # Lightning's stop: a SystemExit without a code, i.e. exit 0
                        raise StudyTerminated(self.watch.where) from None
                    self.watch.where = "between stages"
                    self.watch.check(f"after {stage.label}")
                self.clock = None
                report = write_report(self.root, stages=stage_states(self.root))
                self.watch.check("while the report was written")
            self.watch = None
        self.say(f"report: {report}")
        return report

    def drop_test_outputs(self, stage: Stage) -> None:
        """Delete what the stage's test wrote (its metrics, figures, the files read from them), keeping its fitted
        weights (``FIT_GLOBS``) and its record (until the new test finishes, the record says the old test)."""
        record = StageRecord.read(stage.marker)
        for name in record.outputs if record is not None else {}:
            if not is_fit_output(name):
                (stage.directory / name).unlink(missing_ok=True)

    @staticmethod
    def _labelled(changed: dict[str, list[str]], plan: Sequence[Stage]) -> list[tuple[str, list[str]]]:
        stages = {stage.name: stage for stage in plan}
        labelled = []
        for name, reasons in changed.items():  # keys relative to the stage's own section: train.optimizer...
            own = f"{stages[name].kind if stages[name].kind not in ('base', 'oracle') else name}."
            labelled.append((stages[name].label, [reason.removeprefix(own) for reason in reasons]))
        return labelled

    def run_stage(self, stage: Stage, record: StageRecord, by_name: dict[str, Stage], index: int, total: int) -> None:
        """Reuse, heal or run one stage (see :meth:`run`); one console line for it."""
        from mcu_lightning.report.console import stage_headline, stage_line, stage_purpose
        from mcu_lightning.report.summary import MAIN_METRICS

        label = f"[{index}/{total}] {stage.kind} [bold]{stage.name}[/bold]"
        purpose = stage_purpose(stage.kind, stage.name, self.study)
        record.inputs, record.fit_inputs = {}, {}
        for name in stage.depends:
            upstream = StageRecord.read(by_name[name].marker)
            if upstream is not None:
                record.inputs[name] = outputs_digest(upstream.outputs)
                record.fit_inputs[name] = outputs_digest(
                    {k: v for k, v in upstream.outputs.items() if is_fit_output(k)}
                )
        old = StageRecord.read(stage.marker)
        test_only = stage.name in self.retesting
        if old is not None and not test_only:
            damaged = old.damage(stage.directory)
            stale = [name for name in stage.depends if old.inputs.get(name) != record.inputs.get(name)]
            if not damaged and not stale:
                self.say(stage_line(label, purpose, None, note=f"complete, skipped ({stage.marker})"))
                return
            fit_stale = [name for name in stale if old.fit_inputs.get(name) != record.fit_inputs.get(name)]
            test_only = stage.retest is not None and bool(old.fit_inputs) and not fit_stale
            test_only = test_only and not any(is_fit_output(name) for name in damaged)
            if test_only:  # only what its test read changed (the oracle's test file): the fit stands
                self.warn(f"{stage.label}: the test outputs of {', '.join(stale or damaged)} changed; retesting it")
                self.drop_test_outputs(stage)
            else:
                reason = (
                    f"its outputs {', '.join(damaged)} are missing or changed"
                    if damaged
                    else f"the outputs of {', '.join(stale)} changed since it ran"
                )
                self.warn(f"{stage.label}: {reason}; running it again from the start")
                shutil.rmtree(stage.directory, ignore_errors=True)
        stage.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(stage.partial_marker, json.dumps(record.fields(), indent=2).encode())
        if self.clock is not None:
            self.clock.start(index, f"[{index}/{total}] {stage.kind} {stage.name}")
        started = time.perf_counter()
        timings = stage.retest() if test_only and stage.retest is not None else stage.run()
        record.outputs = output_hashes(stage.directory)
        result = {"stage": stage.name, "kind": stage.kind, "seconds": time.perf_counter() - started, **timings}
        atomic_write(stage.marker, json.dumps({**result, **record.fields()}, indent=2).encode())
        stage.partial_marker.unlink(missing_ok=True)
        if self.clock is not None:
            self.clock.finish()
        self.say(
            stage_line(label, purpose, result["seconds"], stage_headline(stage.kind, stage.directory, MAIN_METRICS))
        )
