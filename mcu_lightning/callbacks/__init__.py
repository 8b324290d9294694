"""Report writers and callbacks."""

from mcu_lightning.callbacks.curve_report import write_curve_report

__all__ = ["write_curve_report"]
