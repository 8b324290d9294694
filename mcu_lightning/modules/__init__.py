"""The LightningModules: plain fine-tuning, unlearning with a pluggable loss, curve fitting."""

from mcu_lightning.modules.base import MCUModule
from mcu_lightning.modules.curve import CurveModule
from mcu_lightning.modules.finetune import FineTuneModule
from mcu_lightning.modules.unlearn import UnlearningModule

__all__ = ["CurveModule", "FineTuneModule", "MCUModule", "UnlearningModule"]
