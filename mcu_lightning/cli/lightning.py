"""The LightningCLI behind ``mcu fit|validate|test|predict`` (imported only when one of them runs)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks.progress import ProgressBar
from lightning.pytorch.cli import LightningCLI

from mcu_lightning.cli.errors import (
    INPUT_ERRORS,
    ConfigError,
    bug_report,
    exit_on_input_error,
    one_line_errors,
    parse_error_line,
)
from mcu_lightning.core.errors import InputError


class MCUCLI(LightningCLI):
    """LightningCLI with the package's defaults (TensorBoard under ``runs/``, configs saved with each run)."""

    def instantiate_classes(self) -> None:
        """Build module, data and trainer; a bad input (an ``InputError``, a missing file, jsonargparse's own
        rejection of the config) is one ``error:`` line; anything else keeps its traceback, with a line saying it
        looks like a bug (``MCU_TRACEBACK=1``: every exception as raised)."""
        try:
            super().instantiate_classes()
        except Exception as err:
            if os.environ.get("MCU_TRACEBACK"):
                raise
            cause = _input_cause(err)
            if cause is None:
                culprit = next(e for e in _chain(err) if not _raised_in_parser(e))
                raise bug_report(err, "building the module, data or trainer", culprit) from err
            raise ConfigError(_one_line(cause)) from err

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; an ``InputError`` found on the way (a checkpoint of another curve shape, a non-finite lr) is one
        ``error:`` line."""
        with one_line_errors(InputError, _one_line):
            super()._run_subcommand(subcommand)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> Any:
        """``test``/``validate`` default to ``--verbose false``: :meth:`after_test` prints one compact table instead
        of Lightning's full table once per evaluation loader (``--verbose true`` brings it back)."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand in ("test", "validate"):
            parser.set_defaults(verbose=False)
        return parser

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        """Add the study's progress bar (steps of ``max_steps``, points of a curve test) unless the config has one."""
        from mcu_lightning.callbacks.progress import LogEveryNStepsFromLoader, StudyProgressBar

        configured = [*(config.get("callbacks") or []), *callbacks]
        extra = [LogEveryNStepsFromLoader()]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in configured
        ):
            extra.append(StudyProgressBar())
        return super()._instantiate_trainer(config, [*callbacks, *extra])

    def after_test(self) -> None:
        """Print the headline metrics (a curve: its barrier summary) instead of leaving them only in files."""
        from rich.console import Console

        from mcu_lightning.core.names import BARRIER_JSON
        from mcu_lightning.report.summary import MAIN_METRICS
        from mcu_lightning.report.tables import barrier_table, metrics_table

        if not self.trainer.is_global_zero:
            return
        console = Console()
        module = self.model
        summary = Path(getattr(module, "output_dir", "")) / BARRIER_JSON
        if getattr(module, "curve_results", None) and summary.is_file():
            console.print(barrier_table(json.loads(summary.read_text()), MAIN_METRICS))
            console.print(f"curve metrics and figure: {summary.parent}")
            return
        result = getattr(module, "last_test_result", None)
        if result is not None:
            console.print(metrics_table(result.aggregates, MAIN_METRICS))


def _raised_in_parser(err: BaseException) -> bool:
    """Whether jsonargparse raised ``err`` itself (it wraps a constructor's error in a long Union message)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "jsonargparse" in tb.tb_frame.f_code.co_filename


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and what it was raised from or while handling, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _input_cause(err: BaseException) -> BaseException | None:
    """The user's input error behind ``err``: the outermost exception of its chain raised outside the config parser
    when that is an input error (``INPUT_ERRORS``), or ``err`` itself when jsonargparse alone raised the whole chain
    (its own rejection of the config); ``None`` when code outside the parser raised anything else (a bug)."""
    ours = [e for e in _chain(err) if not _raised_in_parser(e)]
    if not ours:
        return err
    return ours[0] if isinstance(ours[0], INPUT_ERRORS) else None


def _root_cause(err: BaseException) -> BaseException:
    """The input error of the chain that our code (not the config parser) raised, else ``err``."""
    return _input_cause(err) or err


def _one_line(err: BaseException) -> str:
    err = _root_cause(err)
    message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(message.split())


def lightning_cli(args: Sequence[str] | None = None, run: bool = True, cli_class: type[MCUCLI] = MCUCLI) -> MCUCLI:
    """The ``mcu`` LightningCLI for fit/validate/test/predict (``cli_class``: a subclass, e.g. one that only parses);
    the user's input error is one ``error:`` line and exit status 2, as under ``mcu``."""
    import argparse
    import sys

    import mcu_lightning.data
    import mcu_lightning.modules  # noqa: F401  (--help lists the package's modules and data modules as subclasses)

    argv = list(args) if args is not None else sys.argv[1:]
    parse_errors = one_line_errors(argparse.ArgumentError, parse_error_line(argv[0] if argv else "fit"))
    with exit_on_input_error(), parse_errors:
        return cli_class(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            # a study's stage line says what the model is; the layer table: `--trainer.enable_model_summary true`
            trainer_defaults={"default_root_dir": "runs", "enable_model_summary": False},
            parser_kwargs={"exit_on_error": False},  # a rejected value: one `error:` line, not the usage dump
            args=list(args) if args is not None else None,
            run=run,
        )
