"""The study runner: plans a study's stages and runs those that are not complete.

    base -> oracle -> endpoints (unlearning runs) -> curves (fit + test at every t) -> report

Each stage writes under ``runs/<name>/<stage>/`` (TensorBoard logs, checkpoints, exported model, test
metrics) and a ``stage.json`` marker once complete; a rerun skips complete stages and resumes an
interrupted one from its ``last.ckpt``. The report goes to ``runs/<name>/report/`` (see
:mod:`mcu_lightning.report`). What each kind of stage runs is one function of the study's
:class:`~mcu_lightning.study.context.StageContext` (:mod:`mcu_lightning.study.stages`, :mod:`mcu_lightning.study.uses`);
the runner holds the plan, the stages' identities, and the running.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.names import CHECKPOINTS_DIR, PLANE_DIR
from mcu_lightning.core.version import __version__
from mcu_lightning.study import uses
from mcu_lightning.study.context import StageContext
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
    curve_config,
    curve_objective_spec,
    endpoint_config,
    is_path,
    path_shape,
)
from mcu_lightning.study.seeds import expand_seeds
from mcu_lightning.study.signals import StudyTerminated, TerminationWatch
from mcu_lightning.study.stage import Stage
from mcu_lightning.study.stages import (
    retest_curve,
    retest_endpoint,
    retest_model_stage,
    run_curve,
    run_endpoint,
    run_model_stage,
)
from mcu_lightning.study.status import PLAN_KEY, STUDY_JSON, plan_entries, stage_states
from mcu_lightning.study.validate import validate_metrics, validate_study


class StudyRunner:
    """Plans the stages of a study and runs those that are not complete."""

    def __init__(self, study: Study, console: Any = None, yes: bool = False) -> None:
        """``yes``: run an evaluation above :data:`~mcu_lightning.study.cost.MAX_PASSES` suite passes too."""
        self.study, self.seed_groups = expand_seeds(study)  # one endpoint, curve, merge per seed
        self.root = Path(study.output_dir) / study.name
        # what the stage functions read; its clock and SIGTERM watch are set while run() runs
        self.context = StageContext(self.study, self.root, console)
        self.yes = yes
        self.retesting: set[str] = set()  # the stages whose evaluation alone changed: only their test reruns
        self.validate()

    # validation before any training
    def validate(self) -> None:
        validate_study(self.study, self.context.probes)
        suite = self.context.suite(with_oracle=False)
        validate_metrics(self.study, suite)
        self.cost = evaluation_cost(self.study, len(self.context.datamodule().eval_splits), suite)
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
        datamodule = self.context.datamodule()
        datamodule.setup("fit")  # the forget and retain sets and every evaluation split
        for stage, default in ((self.study.base, "full"), (self.study.oracle, "retain")):
            if stage.path is None and hasattr(datamodule, "load_finetune"):  # what the base and oracle train on
                datamodule.load_finetune(stage.split or default)

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
                    self.context.node_dir(node),
                    partial(run_model_stage, self.context, node),
                    depends=["oracle"] if node == "base" else [],
                    config={**shared, node: resolved},
                    data={"data": study.data, "model": stage.path},
                    retest=partial(retest_model_stage, self.context, node) if stage.path is None else None,
                )
            )
        for endpoint in study.endpoints:
            stages.append(
                Stage(
                    endpoint.name,
                    "endpoint",
                    self.context.node_dir(endpoint.name),
                    partial(run_endpoint, self.context, endpoint),
                    depends=["base", "oracle"],
                    config={**shared, "endpoint": endpoint_config(endpoint), "guard": study.guard},
                    data={"data": study.data},
                    retest=partial(retest_endpoint, self.context, endpoint),
                )
            )
        for curve in study.curves:
            _, init, _ = path_shape(curve)
            reads = [*curve.endpoints, "base", "oracle"]  # the reference and LoRA base, the suite's oracle file
            if init in BUILTIN_NODES:
                reads.append(init)
            objective = curve_objective_spec(curve, study.endpoints)
            config = {**shared, "curve": {**curve_config(curve), "objective": objective}}
            stages.append(
                Stage(
                    curve.name,
                    "curve",
                    self.context.curve_dir(curve),
                    partial(run_curve, self.context, curve),
                    depends=list(dict.fromkeys(reads)),
                    config=config,
                    data={"data": study.data, "init": curve.init},
                    retest=None if is_path(curve) else partial(retest_curve, self.context, curve),
                )
            )
        for merge in study.merges:
            stages.append(
                Stage(
                    merge.name,
                    "merge",
                    self.context.merge_dir(merge),
                    partial(uses.run_merge, self.context, merge),
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
            (f"ensemble-{spec.name}", "ensemble", partial(uses.run_ensemble, self.context, curve, spec), asdict(spec))
            for spec in curve.ensembles
        ]
        if curve.plane is not None:
            found.append((PLANE_DIR, "plane", partial(uses.run_plane, self.context, curve), asdict(curve.plane)))
        for metric in curve.export_best:
            run = partial(uses.run_export_best, self.context, curve, metric)
            found.append((uses.best_folder_name(metric), "export", run, {"metric": metric}))
        return [
            Stage(
                f"{curve.name}/{folder}",
                kind,
                self.context.use_dir(curve, folder),
                run,
                depends=[curve.name, "base", "oracle"],
                config={**shared, kind: config, "curve": curve.name},
                data={"data": self.study.data},
            )
            for folder, kind, run, config in found
        ]

    # running
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
                if any((stage.directory / CHECKPOINTS_DIR).glob("*.ckpt")):
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

        from mcu_lightning.core.clock import StudyClock
        from mcu_lightning.report.summary import write_report

        self.check_writable()
        self.context.say(f"evaluation: {self.cost.line()}")
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
                self.context.say(
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
            self.context.clock = StudyClock(total=len(stages))
            with TerminationWatch() as self.context.watch:
                for index, stage in enumerate(stages, start=1):
                    if only and stage.name not in only:
                        continue
                    self.context.watch.where = f"during {stage.label}"
                    try:
                        self.run_stage(stage, now[stage.name], by_name, index, len(stages))
                    except SIGTERMException:  # Lightning's stop: a SystemExit without a code, i.e. exit 0
                        raise StudyTerminated(self.context.watch.where) from None
                    self.context.watch.where = "between stages"
                    self.context.watch.check(f"after {stage.label}")
                self.context.clock = None
                report = write_report(self.root, stages=stage_states(self.root))
                self.context.watch.check("while the report was written")
            self.context.watch = None
        self.context.say(f"report: {report}")
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
                self.context.say(stage_line(label, purpose, None, note=f"complete, skipped ({stage.marker})"))
                return
            fit_stale = [name for name in stale if old.fit_inputs.get(name) != record.fit_inputs.get(name)]
            test_only = stage.retest is not None and bool(old.fit_inputs) and not fit_stale
            test_only = test_only and not any(is_fit_output(name) for name in damaged)
            if test_only:  # only what its test read changed (the oracle's test file): the fit stands
                self.context.warn(
                    f"{stage.label}: the test outputs of {', '.join(stale or damaged)} changed; retesting it"
                )
                self.drop_test_outputs(stage)
            else:
                reason = (
                    f"its outputs {', '.join(damaged)} are missing or changed"
                    if damaged
                    else f"the outputs of {', '.join(stale)} changed since it ran"
                )
                self.context.warn(f"{stage.label}: {reason}; running it again from the start")
                shutil.rmtree(stage.directory, ignore_errors=True)
        stage.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(stage.partial_marker, json.dumps(record.fields(), indent=2).encode())
        if self.context.clock is not None:
            self.context.clock.start(index, f"[{index}/{total}] {stage.kind} {stage.name}")
        started = time.perf_counter()
        timings = stage.retest() if test_only and stage.retest is not None else stage.run()
        record.outputs = output_hashes(stage.directory)
        result = {"stage": stage.name, "kind": stage.kind, "seconds": time.perf_counter() - started, **timings}
        atomic_write(stage.marker, json.dumps({**result, **record.fields()}, indent=2).encode())
        stage.partial_marker.unlink(missing_ok=True)
        if self.context.clock is not None:
            self.context.clock.finish()
        self.context.say(
            stage_line(label, purpose, result["seconds"], stage_headline(stage.kind, stage.directory, MAIN_METRICS))
        )
