"""Samplers of the data modules: forget/retain pairs, the fine-tuning order, and the curriculum with its pacing.

Every sampler draws from (seed, stream, epoch) alone (:mod:`mcu_lightning.core.streams`): the same order after a
restart at any epoch, on every DDP rank, and unrelated orders for different seeds. Shipped configs name
``mcu_lightning.data.samplers.LinearPacing``; every pacing function and sampler is importable from here.
"""

from mcu_lightning.data.samplers.curriculum import Curriculum, CurriculumSampler
from mcu_lightning.data.samplers.epoch_random import EpochRandomSampler
from mcu_lightning.data.samplers.forget_retain import ForgetRetainSampler
from mcu_lightning.data.samplers.pacing import ExponentialPacing, LinearPacing, Pacing, RootPacing, StepPacing

__all__ = [
    "Curriculum",
    "CurriculumSampler",
    "EpochRandomSampler",
    "ExponentialPacing",
    "ForgetRetainSampler",
    "LinearPacing",
    "Pacing",
    "RootPacing",
    "StepPacing",
]
