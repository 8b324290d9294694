"""The top layer: the ``mcu`` command (``dispatch``), its LightningCLI (``lightning``, imported on first use), and how
both end on an error (``errors``).

``mcu --help`` imports this package, ``dispatch`` and ``errors`` alone (no torch, no Lightning).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcu_lightning.cli.dispatch import COMMANDS, check_ckpt_path, check_class_paths, main, usage
from mcu_lightning.cli.errors import INPUT_ERRORS, ConfigError, one_line_errors

if TYPE_CHECKING:
    from mcu_lightning.cli.lightning import MCUCLI, lightning_cli

__all__ = [
    "COMMANDS",
    "INPUT_ERRORS",
    "MCUCLI",
    "ConfigError",
    "check_ckpt_path",
    "check_class_paths",
    "lightning_cli",
    "main",
    "one_line_errors",
    "usage",
]


def __getattr__(name: str) -> Any:
    """``MCUCLI`` and ``lightning_cli`` import Lightning: reached on first use."""
    if name in ("MCUCLI", "lightning_cli"):
        from mcu_lightning.cli import lightning

        return getattr(lightning, name)
    raise AttributeError(f"module 'mcu_lightning.cli' has no attribute {name!r}")
