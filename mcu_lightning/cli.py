"""``mcu``: LightningCLI for fit/validate/test/predict, plus ``experiment`` and ``report``.

    mcu fit --config configs/quickstart/curve_digits.yaml
    mcu test --config configs/tofu/curve.yaml --ckpt_path runs/.../last.ckpt
    mcu experiment --config configs/quickstart/experiment.yaml
    mcu report runs/quickstart

Modules and data are chosen by ``class_path`` (subclass mode), so research code passes its own
LightningModule, loss or curve shape without touching the package.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

STUDY_COMMANDS = ("experiment", "report")


class MCUCLI(LightningCLI):
    """LightningCLI with the package's defaults (TensorBoard under ``runs/``, configs saved with each run)."""


def lightning_cli(args: Sequence[str] | None = None, run: bool = True) -> MCUCLI:
    return MCUCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"default_root_dir": "runs"},
        args=list(args) if args is not None else None,
        run=run,
    )


def main(args: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in STUDY_COMMANDS:
        from mcu_lightning import experiment

        command = experiment.run_experiment_cli if argv[0] == "experiment" else experiment.report_cli
        command(argv[1:])
        return
    lightning_cli(args)  # None: LightningCLI reads sys.argv itself


if __name__ == "__main__":  # pragma: no cover
    main()
