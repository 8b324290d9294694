"""``mcu report``: rebuild a study's report from the metrics its stages saved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser

from mcu_lightning.core.errors import InputError
from mcu_lightning.report.curve import VECTOR_FORMATS
from mcu_lightning.report.summary import TEST_METRICS, write_report


def report_cli(args: Sequence[str]) -> Path:
    parser = ArgumentParser(
        prog="mcu report",
        description="Rebuild a study's report from its saved metrics.",
        exit_on_error=False,  # a rejected argument is one `error:` line from the CLI
    )
    parser.add_argument("run_dir", type=str, help="runs/<name>: the study's output folder")
    parser.add_argument("--vector", type=str | None, default=None, help="also write every figure as pdf or svg")
    cfg = parser.parse_args(list(args))

    run_dir = Path(cfg.run_dir)
    if not (run_dir / "study.json").is_file() and not any(run_dir.glob(f"**/{TEST_METRICS}")):
        raise InputError(
            f"'{run_dir}' holds no study (no study.json or test_metrics.json); pass the runs/<name> folder of a study "
            "that `mcu experiment` has run"
        )
    if cfg.vector is not None and cfg.vector not in VECTOR_FORMATS:
        raise InputError(f"--vector {cfg.vector}: choose one of {', '.join(VECTOR_FORMATS)}, or leave it out")
    path = write_report(run_dir, vector=cfg.vector)
    from mcu_lightning.report.console import report_line

    print(report_line(path))
    return path
