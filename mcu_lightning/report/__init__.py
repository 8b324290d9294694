"""What a user reads: the per-curve files (``curve``), the study's ``summary.md`` and figures (``summary``), their
shared style (``figure_style``), the terminal lines and progress bars (``console``), and ``mcu report`` (``cli``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcu_lightning.report.curve import write_curve_report
    from mcu_lightning.report.summary import write_report

__all__ = ["write_curve_report", "write_report"]


def __getattr__(name: str) -> Any:
    """Imported on first use: ``mcu --help`` and ``mcu report --help`` need neither torch nor matplotlib."""
    if name == "write_curve_report":
        from mcu_lightning.report.curve import write_curve_report

        return write_curve_report
    if name == "write_report":
        from mcu_lightning.report.summary import write_report

        return write_report
    raise AttributeError(f"module 'mcu_lightning.report' has no attribute {name!r}")
