"""The LightningModules (plain fine-tuning, unlearning with a pluggable loss, curve fitting), and what evaluates
with them: a point of a curve written out (``export``), the metric plane (``plane``)."""

from mcu_lightning.modules.base import MCUModule
from mcu_lightning.modules.curve import CurveModule
from mcu_lightning.modules.finetune import FineTuneModule
from mcu_lightning.modules.plane import MetricPlane, metric_plane
from mcu_lightning.modules.unlearn import UnlearningModule

__all__ = ["CurveModule", "FineTuneModule", "MCUModule", "MetricPlane", "UnlearningModule", "metric_plane"]
