"""``mcu report``: rebuild a study's report from the metrics its stages saved."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from jsonargparse import ArgumentParser

from mcu_lightning.core.errors import InputError
from mcu_lightning.report.curve import VECTOR_FORMATS
from mcu_lightning.report.stages import StageState
from mcu_lightning.report.summary import write_report


def report_cli(args: Sequence[str], stage_states: Callable[[Path], list[StageState]] | None = None) -> Path:
    """``mcu report RUN_DIR``: the report of the study's planned stages. ``stage_states`` (the study layer's
    ``mcu_lightning.study.status.stage_states``) reads the plan and checks each stage as ``mcu experiment`` does: a
    folder that is not one study is refused, and stages that are missing or stale are named in the summary's first
    lines and make it exit 2 unless ``--partial``."""
    parser = ArgumentParser(
        prog="mcu report",
        description="Rebuild a study's report from its saved metrics.",
        exit_on_error=False,  # a rejected argument is one `error:` line from the CLI
    )
    parser.add_argument("run_dir", type=str, help="runs/<name>: the study's output folder")
    parser.add_argument("--vector", type=str | None, default=None, help="also write every figure as pdf or svg")
    parser.add_argument(
        "--partial", action="store_true", help="accept a report of a study with missing or stale stages (exit 0)"
    )
    cfg = parser.parse_args(list(args))

    run_dir = Path(cfg.run_dir)
    if cfg.vector is not None and cfg.vector not in VECTOR_FORMATS:
        raise InputError(f"--vector {cfg.vector}: choose one of {', '.join(VECTOR_FORMATS)}, or leave it out")
    states = stage_states(run_dir) if stage_states is not None else None  # refuses a folder that is not one study
    path = write_report(run_dir, vector=cfg.vector, stages=states)
    from mcu_lightning.report.console import report_line

    print(report_line(path))
    incomplete = [state for state in states or () if not state.complete]
    if incomplete and not cfg.partial:
        raise InputError(
            f"{len(incomplete)} of {len(states or ())} planned stages are missing or stale and left out of {path}: "
            + "; ".join(state.line for state in incomplete)
            + "; run `mcu experiment` with the study's config to complete them, or pass --partial to accept it"
        )
    return path
