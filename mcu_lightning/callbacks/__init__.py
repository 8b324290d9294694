"""Lightning callbacks: atomic checkpoints, evaluation during training, the divergence guard, the progress bars."""

from mcu_lightning.callbacks.checkpoint import AtomicCheckpointIO, atomic_torch_save, atomic_write
from mcu_lightning.callbacks.during_training import EvaluateDuringTraining
from mcu_lightning.callbacks.guard import DivergenceGuard

__all__ = [
    "AtomicCheckpointIO",
    "DivergenceGuard",
    "EvaluateDuringTraining",
    "atomic_torch_save",
    "atomic_write",
]
