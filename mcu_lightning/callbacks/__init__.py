"""Report writers and callbacks."""

from mcu_lightning.callbacks.checkpoint import AtomicCheckpointIO, atomic_torch_save, atomic_write
from mcu_lightning.callbacks.curve_report import write_curve_report
from mcu_lightning.callbacks.during_training import EvaluateDuringTraining
from mcu_lightning.callbacks.guard import DivergenceGuard
from mcu_lightning.callbacks.plane_report import write_plane_report

__all__ = [
    "AtomicCheckpointIO",
    "DivergenceGuard",
    "EvaluateDuringTraining",
    "atomic_torch_save",
    "atomic_write",
    "write_curve_report",
    "write_plane_report",
]
