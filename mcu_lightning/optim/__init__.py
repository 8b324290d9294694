"""Optimizers: SophiaG, the second-order optimizer of SOUL (DESIGN.md, "Second order")."""

from mcu_lightning.optim.sophia import SophiaG

__all__ = ["SophiaG"]
