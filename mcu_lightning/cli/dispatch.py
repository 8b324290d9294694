"""``mcu``: a command table; fit/validate/test/predict run LightningCLI (``cli.lightning``); ``experiment``, ``grid``,
``report`` run studies and read them.

    mcu fit --config configs/quickstart/curve_digits.yaml
    mcu test --config configs/tofu/curve.yaml --ckpt_path runs/.../last.ckpt
    mcu experiment --config configs/quickstart/experiment.yaml
    mcu grid --config configs/quickstart/paper_grid.yaml
    mcu report runs/quickstart
    mcu export --ckpt_path runs/.../last.ckpt --t 0.35 --output_dir runs/.../t0.35

Modules and data are chosen by ``class_path`` (subclass mode), so research code passes its own
LightningModule, loss or curve shape without touching the package.

Bad input gets one line on stderr and exit status 2, before any training: every ``class_path`` in the
config files and ``--...class_path`` overrides is imported first (an unknown one is named with where it
sits and the closest known paths, instead of jsonargparse's long dump), and errors raised while the
module and data are built (an endpoint that does not exist, endpoints of different architectures, a
reference that cannot be loaded, non-finite weights: an ``InputError``, or a file that does not exist) are printed
as ``error: <message>``. Set ``MCU_TRACEBACK=1`` to get the traceback instead. Any other exception is a bug (ours,
or in a class the config names): it keeps its traceback, followed by a line saying so (``cli.errors``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from mcu_lightning.cli.errors import (
    INPUT_ERRORS,
    ConfigError,
    disk_errors,
    exit_on_input_error,
    folded,
    one_line_errors,
    parse_error_line,
)
from mcu_lightning.core.errors import InputError

STUDY_COMMANDS = ("experiment", "grid", "report")
CONFIG_FLAGS = ("--config", "-c")


def _flags(argv: Sequence[str]) -> Iterator[tuple[str, str]]:
    """``(flag, value)`` for every ``--flag value`` and ``--flag=value`` of ``argv``."""
    items = list(argv)
    for index, arg in enumerate(items):
        flag, _, inline = arg.partition("=")
        value = inline if inline else (items[index + 1] if index + 1 < len(items) else None)
        if value is not None:
            yield flag, value


def iter_class_paths(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """``(class_path, where)`` for every ``class_path`` key in a nested config (``where``: dotted location)."""
    if isinstance(node, dict):
        value = node.get("class_path")
        if isinstance(value, str):
            yield value, where or "<root>"
        for key, child in node.items():
            yield from iter_class_paths(child, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from iter_class_paths(child, f"{where}.{index}")


def _config_sources(argv: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """``(prefix, content)`` of each config file and each ``--a.b.class_path X`` override in ``argv``."""
    for flag, value in _flags(argv):
        if flag in CONFIG_FLAGS:
            path = Path(value)
            if not path.is_file():
                raise ConfigError(f"config file '{value}' does not exist")
            content = read_yaml(path)
            if not isinstance(content, dict):  # jsonargparse would say only "Unexpected config:"
                what = "is empty" if content is None else f"holds a {type(content).__name__}, not keys and values"
                raise ConfigError(f"config file '{value}' {what}; write the settings as key: value lines")
            yield "", content
        elif flag.startswith("--") and flag.endswith(".class_path"):
            yield flag[2 : -len(".class_path")], {"class_path": value}


def read_yaml(path: Path) -> Any:
    """A config file's content; a YAML syntax error or bytes that are not UTF-8 are one line naming file and line."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"config file '{path}'{where} is not valid YAML: {' '.join(str(problem).split())}") from None
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigError(f"config file '{path}' line {line}: byte {err.object[err.start]:#04x} is not UTF-8") from None


def check_class_paths(argv: Sequence[str]) -> None:
    """Import every ``class_path`` the command line names; raise ``ConfigError`` on the first unknown one."""
    from mcu_lightning.core.registry import close_matches, resolve_class_path

    for prefix, content in _config_sources(argv):
        for class_path, where in iter_class_paths(content):
            location = f"{prefix}.{where}".strip(".") if where != "<root>" else prefix or where
            if "." not in class_path:  # a bare class name: jsonargparse resolves it among the subclasses
                continue
            try:
                resolve_class_path(class_path, location)
            except InputError:
                suggestions = close_matches(class_path)
                hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
                raise ConfigError(f"unknown class_path {class_path!r} ({location}){hint}") from None


COMMANDS: dict[str, str] = {
    "fit": "train a module from a config: a base model, an unlearned endpoint or a curve between two",
    "validate": "run a module's validation loop",
    "test": "evaluate a module's metric suite (a curve: at every t) and print its headline metrics",
    "predict": "run a module's predict loop",
    "export": "write the model at one t of a trained curve as a model folder (--ckpt_path, --t, --output_dir)",
    "experiment": "run a whole study from one YAML: base, oracle, endpoints, curves, then the report",
    "grid": "run the paper's grid (a study per forget split, a curve per factor contrast and seed), then its table",
    "report": "rebuild a study's report from its saved metrics and print where it is",
}
HELP_FLAGS = ("-h", "--help")


def usage() -> str:
    """``mcu --help``: every command on one line. Built from ``COMMANDS`` alone: no torch, no Lightning."""
    width = max(map(len, COMMANDS))
    lines = [
        "usage: mcu <command> [options]        (mcu <command> --help: that command's options)",
        "",
        "Mode connectivity for machine unlearning, on PyTorch Lightning.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()),
        "",
        "e.g.  mcu experiment --config configs/quickstart/experiment.yaml",
    ]
    return "\n".join(lines)


def main(args: Sequence[str] | None = None) -> None:
    """``mcu ARGS`` (default: the command line); the user's input error is one line and exit status 2
    (:func:`~mcu_lightning.cli.errors.exit_on_input_error`)."""
    with exit_on_input_error():
        _run(args)


def _run(args: Sequence[str] | None) -> None:
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in HELP_FLAGS:
        print(usage())
        raise SystemExit(0)  # as argparse's --help does
    if argv[0] == "--version":
        from mcu_lightning.core.version import __version__

        print(f"mcu {__version__}")
        raise SystemExit(0)
    if not argv[0].startswith("-") and argv[0] not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; one of {', '.join(COMMANDS)} (mcu --help)"
        raise ConfigError(f"unknown command '{argv[0]}'{hint}")
    threads = os.environ.get("MCU_NUM_THREADS")
    if threads:  # small models on busy CPUs run faster on one intra-op thread
        import torch

        torch.set_num_threads(int(threads))
    from mcu_lightning.core import threads as thread_choice

    thread_choice.enable()  # each module's setup sets the count from its model's size (core.threads) and says it
    if argv[0] not in STUDY_COMMANDS:  # the same quiet console as `mcu experiment` (MCU_VERBOSE=1 keeps it all)
        from mcu_lightning.core.quiet import quiet_third_party

        quiet_third_party()
    if argv and argv[0] in STUDY_COMMANDS:
        if argv[0] == "experiment":
            check_class_paths(argv[1:])
            from mcu_lightning.study.cli import run_experiment_cli as command
        elif argv[0] == "grid":
            check_class_paths(argv[1:])
            from mcu_lightning.study.cli import run_grid_cli as command
        else:
            from functools import partial

            from mcu_lightning.report.cli import report_cli
            from mcu_lightning.study.status import stage_states

            command = partial(report_cli, stage_states=stage_states)  # the plan's stages, checked as experiment does
        parse_errors = one_line_errors(argparse.ArgumentError, parse_error_line(argv[0]))
        with disk_errors(), parse_errors:
            command(argv[1:])  # bad input found before any stage ran: an InputError (StudyError is one)
        return
    if argv[0] == "export":
        with disk_errors():
            _export(argv[1:])
        return
    check_class_paths(argv)
    check_ckpt_path(argv)
    from mcu_lightning.cli.lightning import lightning_cli

    with disk_errors():
        lightning_cli(args)  # None: LightningCLI reads sys.argv itself


def _export(argv: Sequence[str]) -> None:
    """``mcu export``: bad input (a t outside [0, 1], not a curve checkpoint, a used folder) is one line."""
    from mcu_lightning.modules.export import export_cli

    with one_line_errors(INPUT_ERRORS, folded):
        export_cli(argv)


#: ``--ckpt_path`` values Lightning resolves itself instead of reading a file.
CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


def check_ckpt_path(argv: Sequence[str]) -> None:
    """A ``--ckpt_path`` file that is missing or damaged is a ``CheckpointError`` (one line), before LightningCLI reads
    it for hparams."""
    from mcu_lightning.callbacks.checkpoint import check_checkpoint

    for flag, value in _flags(argv):
        if (
            flag != "--ckpt_path"
            or not value
            or value in CKPT_KEYWORDS
            or value.startswith(("registry", "hpc"))
            or "://" in value
        ):
            continue
        check_checkpoint(value)  # a CheckpointError: an InputError
