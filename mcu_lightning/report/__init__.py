"""What a user reads: the per-curve files (``curve``), the metric plane's files (``plane``), the study's
``summary.md`` and figures (``summary``), a grid's table and figures (``grid``), their shared style
(``figure_style``), the terminal lines and progress bars (``console``), and ``mcu report`` (``cli``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcu_lightning.report.curve import write_curve_report
    from mcu_lightning.report.plane import write_plane_report
    from mcu_lightning.report.summary import write_report

_EXPORTS = {
    "write_curve_report": "mcu_lightning.report.curve",
    "write_plane_report": "mcu_lightning.report.plane",
    "write_report": "mcu_lightning.report.summary",
}
__all__ = ["write_curve_report", "write_plane_report", "write_report"]


def __getattr__(name: str) -> Any:
    """Imported on first use: ``mcu --help`` and ``mcu report --help`` need neither torch nor matplotlib."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mcu_lightning.report' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
