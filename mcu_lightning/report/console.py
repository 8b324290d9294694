"""What a study prints: one line per stage, Lightning's progress bars, and nothing else unless something is wrong.

- :func:`quiet_third_party` silences what other libraries print that says nothing about this run: Lightning's
  start-up INFO lines (device list, litlogger tips, seeds, "stopped: max_epochs reached"; by message), the Hugging Face
  progress bars for tiny local files, and two warnings we cannot fix at their cause, each filtered by message
  and module. Warnings, errors and everything else still print; ``MCU_VERBOSE=1`` keeps all of it.
- :class:`StudyProgressBar`: Lightning's rich bar, counting a step-bounded fit in steps of ``max_steps``
  (``step 12/60``, not ``Epoch 29/-2``), epochs from 1, a curve's test by point (t i of N, with ETA), and a
  study row with the stage, the study's elapsed time and an estimate of what is left.
- :class:`LogEveryNStepsFromLoader`: ``log_every_n_steps`` no larger than an epoch's batches.
- :func:`stage_line`: ``[3/7] endpoint graddiff  unlearn the base with GradDiff  9.0 s  forget/prob 0.052 ...``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import CustomTimeColumn, ProcessingSpeedColumn
from rich.text import Text

from mcu_lightning.core.curve_spec import is_training_free
from mcu_lightning.core.names import BARRIER_JSON, TEST_METRICS
from mcu_lightning.core.storage import read_json

#: INFO lines (logger, message start) that describe the library, not the run; every other line still prints
#: (a resume's "Restored all states ...", any warning).
CHATTY_LINES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lightning.pytorch.utilities.rank_zero", ("GPU available", "TPU available", "HPU available", "💡 Tip")),
    ("lightning.pytorch.utilities.rank_zero", ("`Trainer.fit` stopped",)),  # the stage line says it finished
    ("lightning.fabric.utilities.seed", ("Seed set to",)),  # the study's YAML says the seed
)


class _DropLines(logging.Filter):
    """Drop the records of one logger whose message starts with one of ``starts``."""

    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


#: (message regex, module regex) of third-party warnings that no project code can prevent.
THIRD_PARTY_WARNINGS = (
    # Lightning 2.6's own pytree helper calls torch's deprecated LeafSpec (fixed upstream, not by a caller)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    # MCUModule overrides transfer_batch_to_device on purpose (a CPU batch is not walked); Lightning notes
    # that the module's hook wins over the datamodule's, which is what we want
    (r"You have overridden `transfer_batch_to_device` in `LightningModule`", r"lightning\.pytorch\.trainer"),
)


def quiet_third_party() -> None:
    """Silence third-party chatter for a study's console (see the module docstring); ``MCU_VERBOSE=1``: keep it."""
    if os.environ.get("MCU_VERBOSE"):
        return
    for name, starts in CHATTY_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) and f.starts == starts for f in logger.filters):
            logger.addFilter(_DropLines(starts))
    for message, module in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    # LightningCLI 2.6 calls jsonargparse APIs that jsonargparse 4.49 deprecates (`mcu fit`/`test`; not our calls)
    with contextlib.suppress(ImportError):  # the class is not public; older jsonargparse has no such warnings
        from jsonargparse._deprecated import JsonargparseDeprecationWarning

        warnings.filterwarnings("ignore", category=JsonargparseDeprecationWarning, module=r"lightning\.pytorch\.cli")
    # "Generating train split", "Loading weights", "Writing model shards": bars over local files of a few KB
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


class LogEveryNStepsFromLoader(Callback):
    """Lower ``log_every_n_steps`` to the batches of one epoch when an epoch is shorter.

    Lightning warns that the logging interval exceeds the epoch otherwise; the interval counts across epochs,
    so nothing was lost, but a short-epoch run then logs rarely. Reads the train loader's length after the
    datamodule's ``setup`` (callbacks' ``setup`` runs after it, before the fit loop sizes its data).
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.datamodule is None:
            return
        try:
            batches = len(trainer.datamodule.train_dataloader())
        except TypeError:  # an iterable without a length: nothing to compare
            return
        if 0 < batches < trainer.log_every_n_steps:
            trainer.log_every_n_steps = batches


@dataclass
class StudyClock:
    """Where a study is: the stage running, how many there are, and the seconds the finished ones took."""

    total: int
    started: float = field(default_factory=time.monotonic)
    index: int = 0
    label: str = ""
    stage_started: float = field(default_factory=time.monotonic)
    durations: list[float] = field(default_factory=list)

    def start(self, index: int, label: str) -> None:
        self.index, self.label, self.stage_started = index, label, time.monotonic()

    def finish(self) -> float:
        seconds = time.monotonic() - self.stage_started
        self.durations.append(seconds)
        return seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float | None:
        """Seconds left: the mean duration of the stages run so far for each stage not finished, less the time
        the current one has run; ``None`` before any stage finished."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        left = self.total - self.index + 1  # this stage and those after it
        return max(0.0, mean * left - (time.monotonic() - self.stage_started))


def clock_text(seconds: float | None) -> str:
    return "-:--:--" if seconds is None else str(timedelta(seconds=int(seconds)))


class _TimeColumn(CustomTimeColumn):
    """Lightning's ``elapsed • remaining`` column; the study row shows the study's times instead of its own."""

    def render(self, task: Any) -> Text:
        clock = task.fields.get("study")
        if clock is None:
            return super().render(task)
        return Text(f"{clock_text(clock.elapsed())} • ~{clock_text(clock.remaining())}", style=self.style)


class _SpeedColumn(ProcessingSpeedColumn):
    """Lightning's ``it/s`` column, blank on the study row (stages per second says nothing)."""

    def render(self, task: Any) -> Text:
        return Text("") if "study" in task.fields else super().render(task)


class StudyProgressBar(RichProgressBar):
    """Lightning's rich progress bar, saying where a study's run is (see the module docstring).

    Args:
        clock: the study's clock; with one, every display also has a row for the study's stage and times.
    """

    def __init__(self, clock: StudyClock | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("leave", False)
        super().__init__(**kwargs)
        self.clock = clock
        self._points_id: Any = None
        self._batches_id: Any = None
        self._study_id: Any = None

    def configure_columns(self, trainer: Trainer) -> list:
        replace = {CustomTimeColumn: _TimeColumn(style=self.theme.time)}
        replace[ProcessingSpeedColumn] = _SpeedColumn(style=self.theme.processing_speed)
        return [replace.get(type(column), column) for column in super().configure_columns(trainer)]

    def _init_progress(self, trainer: Trainer) -> None:
        fresh = self.is_enabled and (self.progress is None or self._progress_stopped)
        super()._init_progress(trainer)
        if fresh:
            self._points_id = None
            self._batches_id = None
            self._study_id = None
            if self.clock is not None and self.progress is not None:
                clock = self.clock
                self._study_id = self.progress.add_task(
                    clock.label, total=clock.total, completed=clock.index - 1, study=clock
                )

    # -- training: steps when max_steps bounds the fit ---------------------------------------------------
    def _step_bounded(self) -> bool:
        trainer = self.trainer
        return trainer.max_steps > 0 and (trainer.max_epochs is None or trainer.max_epochs < 0)

    def _get_train_description(self, current_epoch: int) -> str:
        if self._step_bounded():
            return "step"
        max_epochs = self.trainer.max_epochs
        return f"epoch {current_epoch + 1}" + (f"/{max_epochs}" if max_epochs and max_epochs > 0 else "")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._step_bounded():
            super().on_train_epoch_start(trainer, pl_module)
            return
        if self.is_disabled or self.progress is None:
            return
        if self.train_progress_bar_id is None:  # one bar for the whole fit, in steps
            self.train_progress_bar_id = self._add_task(trainer.max_steps, "step")
            self._update(self.train_progress_bar_id, trainer.global_step)
        self.refresh()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._step_bounded():
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        if not self.is_disabled and self.train_progress_bar_id is None:
            self.train_progress_bar_id = self._add_task(trainer.max_steps, "step")
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    # -- a curve's test: one bar over the points t ---------------------------------------------------------
    def on_curve_point(self, trainer: Trainer, pl_module: LightningModule, done: int, total: int, t: float) -> None:
        """Called by ``CurveModule`` before its first point (``done=0``) and after each one."""
        if self.is_disabled or self.progress is None:
            return
        description = f"t={t:.2f}" if done < total else "curve points"
        if self._points_id is None:
            self._points_id = self.progress.add_task(description, total=total)
        self.progress.update(self._points_id, completed=done, description=description)
        self.refresh()

    def on_curve_batch(self, trainer: Trainer, pl_module: LightningModule, done: int, total: int) -> None:
        """Called by ``CurveModule`` as the suite works through one point's batches (the generation counts as one)."""
        if self.is_disabled or self.progress is None:
            return
        if self._batches_id is None:
            self._batches_id = self.progress.add_task("batches of the point", total=total)
        self.progress.update(self._batches_id, completed=done, total=total)
        self.refresh()


def headline(metrics: dict[str, float], names: Sequence[str], count: int = 3) -> str:
    """The first ``count`` of ``names`` that ``metrics`` has a finite value for: ``forget/prob 0.0518 ...``."""
    shown = [(n, metrics[n]) for n in names if isinstance(metrics.get(n), (int, float)) and math.isfinite(metrics[n])]
    return "  ".join(f"{name} {value:.4g}" for name, value in shown[:count])


def stage_headline(kind: str, directory: Path, names: Sequence[str]) -> str:
    """A finished stage's headline: a model's first main test metrics, a curve's barrier on its first one."""
    if kind == "curve":
        path = directory / BARRIER_JSON
        if not path.is_file():
            return ""
        metrics = read_json(path).get("metrics", {})
        rows = [(n, metrics[n]) for n in names if math.isfinite(metrics.get(n, {}).get("barrier_vs_line", math.nan))]
        shown = [  # a barrier of 0 sits nowhere: its t is only where the search began
            f"{n} {row['barrier_vs_line']:.3g} (t={row['t_barrier_vs_line']:.2f})"
            if row["barrier_vs_line"] > 0
            else f"{n} no barrier"
            for n, row in rows[:2]
        ]
        return f"barrier vs line: {', '.join(shown)}" if shown else ""
    path = directory / TEST_METRICS
    if not path.is_file():
        return ""
    data = read_json(path)
    aggregates = {k: v for k, v in data.get("aggregates", {}).items() if isinstance(v, (int, float))}
    return headline(aggregates, names)


def _class_name(spec: Any) -> str:
    path = spec.get("class_path", "") if isinstance(spec, dict) else str(spec)
    return path.rsplit(".", 1)[-1]


def stage_purpose(kind: str, name: str, study: Any) -> str:
    """What a stage does, in a few words, from the study's spec (``study``: an ``experiment.Study``)."""
    if kind in ("base", "oracle"):
        stage = getattr(study, kind)
        if stage.path is not None:
            return f"test the {kind} at {stage.path}"
        split = stage.split or ("full" if kind == "base" else "retain")
        return f"train the {kind} on {split}"
    if kind == "endpoint":
        endpoint = next(e for e in study.endpoints if e.name == name)
        return f"unlearn the base with {_class_name(endpoint.loss)}"
    if kind == "merge":
        merge = next(m for m in study.merges if m.name == name)
        return f"merge {' + '.join(merge.endpoints)} by {merge.method} and test it"
    if kind in ("ensemble", "plane", "export"):
        curve_name, use = name.split("/", 1)
        what = {"ensemble": f"evaluate the {use}", "plane": "evaluate the metric plane", "export": f"export the {use}"}
        return f"{what[kind]} of curve {curve_name}"
    curve = next(c for c in study.curves if c.name == name)
    points = study.evaluation.eval_ts
    points = points if isinstance(points, int) else len(points)
    a, b = curve.endpoints
    if is_training_free(curve.path, curve.fixed_bends, curve.shape):  # test only
        kind = curve.path or _class_name(curve.shape)
        return f"test the {kind} path {a} -> {b} at {points} points of t (no training)"
    return f"fit a {_class_name(curve.shape)} curve {a} -> {b}, test at {points} points of t"


def stage_line(label: str, purpose: str, seconds: float | None, metric: str = "", note: str = "") -> str:
    """``[3/7] endpoint graddiff  unlearn the base with GradDiff  9.0 s  forget/prob 0.052``."""
    time_text = note or (f"{seconds:.1f} s" if seconds is not None else "")
    return "  ".join(part for part in (label, f"[dim]{purpose}[/dim]", time_text, metric) if part)


def metrics_table(aggregates: dict[str, float], names: Sequence[str], title: str = "test metrics") -> Any:
    """A rich table of the main metrics ``aggregates`` has (in ``names`` order), one row each."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in names:
        value = aggregates.get(name)
        if isinstance(value, (int, float)):
            table.add_row(name, "n/a" if math.isnan(value) else f"{value:.4g}")
    return table


def barrier_table(summary: dict[str, Any], names: Sequence[str], title: str = "barriers along the curve") -> Any:
    """A rich table of a curve's barrier summary (``barrier_summary.json``) for the main metrics it has."""
    from rich.table import Table

    def fmt(value: Any) -> str:
        return "n/a" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.4g}"

    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for column in ("metric", "t=0", "t=1", "vs line", "at t", "best interior", "beats both ends"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    metrics = summary.get("metrics", {})
    for name in names:
        row = metrics.get(name)
        if row is None:
            continue
        table.add_row(
            name,
            fmt(row.get("value_t0")),
            fmt(row.get("value_t1")),
            fmt(row.get("barrier_vs_line")),
            fmt(row.get("t_barrier_vs_line")),
            fmt(row.get("best_interior")),
            "yes" if row.get("interior_beats_endpoints") else "no",
        )
    return table


def report_line(summary: Path) -> str:
    """``report: runs/x/report/summary.md (and 4 figures in runs/x/report)``: where a study's report is."""
    figures = sorted(summary.parent.glob("*.png"))
    return f"report: {summary} (and {len(figures)} figure{'s' * (len(figures) != 1)} in {summary.parent})"
