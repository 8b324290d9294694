"""``mcu experiment``: a whole MCU study from one YAML, stage by stage through the Lightning Trainer; ``mcu grid``: the
studies of a grid YAML (:mod:`mcu_lightning.study.grid`) and its report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mcu_lightning.study.lock import StudyLocked
from mcu_lightning.study.schema import StudyError, parse_study, study_parser


def run_experiment_cli(args: Sequence[str]) -> Path | None:
    parser = study_parser()
    if any(a == "--print_config" or a.startswith("--print_config=") for a in args):
        cfg = parser.parse_args([a for a in args if not a.startswith("--print_config")])
        print(parser.dump(cfg))
        return None
    study, cfg = parse_study(args)
    if cfg.get("smoke"):
        from mcu_lightning.study.smoke import smoke

        study = smoke(study)
    from rich.console import Console

    from mcu_lightning.core.quiet import quiet_third_party
    from mcu_lightning.study.runner import (
        StudyRunner,
    )  # torch and Lightning: imported once a study runs, not for --help

    quiet_third_party()

    try:  # a mistake in the study is a StudyError (an InputError) already; a data file that is not there is one too
        runner = StudyRunner(study, console=Console(stderr=True, soft_wrap=True), yes=bool(cfg.get("yes")))
    except (FileNotFoundError, NotADirectoryError) as err:
        raise StudyError(str(err)) from err
    try:
        return runner.run(only=cfg.get("only"), rerun=bool(cfg.get("rerun")))
    except StudyLocked as err:
        raise StudyError(str(err)) from err


def run_grid_cli(args: Sequence[str]) -> Path | None:
    """``mcu grid``: every study of a grid YAML (one per forget split), then the grid report."""
    from mcu_lightning.study.grid import grid_parser, parse_grid, run_grid

    if any(a == "--print_config" or a.startswith("--print_config=") for a in args):
        parser = grid_parser()
        print(parser.dump(parser.parse_args([a for a in args if not a.startswith("--print_config")])))
        return None
    grid, cfg = parse_grid(args)
    from rich.console import Console

    from mcu_lightning.core.quiet import quiet_third_party

    quiet_third_party()
    try:
        path = run_grid(
            grid,
            splits=cfg.get("splits"),
            rerun=bool(cfg.get("rerun")),
            console=Console(stderr=True, soft_wrap=True),
            report_only=bool(cfg.get("report_only")),
        )
    except StudyLocked as err:
        raise StudyError(str(err)) from err
    print(f"grid report: {path}")
    return path
