"""Optimizers: SophiaG, the second-order optimizer of SOUL (its update rule: ``optim/sophia.py``)."""

from mcu_lightning.optim.sophia import SophiaG

__all__ = ["SophiaG"]
