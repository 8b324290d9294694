"""Pluggable unlearning objectives: ``loss(policy, batch, reference=None) -> LossOutput``.

One family a file; every class is YAML-constructible
(``loss: {class_path: mcu_lightning.losses.NPO, init_args: {beta: 0.1}}``).
"""

from __future__ import annotations

from mcu_lightning.losses.bad_teaching import BadTeaching
from mcu_lightning.losses.base import LossOutput, UnlearningLoss, WrapperLoss, model_gradients
from mcu_lightning.losses.ceu import CEU
from mcu_lightning.losses.forget_retain import ForgetRetainLoss, retain_term
from mcu_lightning.losses.grad_ascent import GradAscent
from mcu_lightning.losses.grad_diff import GradDiff
from mcu_lightning.losses.idk_dpo import IDK_ANSWERS, IdkDPO, dpo_loss
from mcu_lightning.losses.kl import kl_to_reference
from mcu_lightning.losses.nll import NLL
from mcu_lightning.losses.npo import NPO, npo_loss
from mcu_lightning.losses.pdu import PDU
from mcu_lightning.losses.random_label import RandomLabel
from mcu_lightning.losses.rmu import RMU, activation_loss
from mcu_lightning.losses.salun import SalUn
from mcu_lightning.losses.satimp import SatImp
from mcu_lightning.losses.scrub import SCRUB
from mcu_lightning.losses.simnpo import SimNPO, simnpo_loss
from mcu_lightning.losses.superloss import SuperLoss, superloss, superloss_sigma
from mcu_lightning.losses.undial import UNDIAL
from mcu_lightning.losses.wga import WGA

__all__ = [
    "CEU",
    "IDK_ANSWERS",
    "NLL",
    "NPO",
    "PDU",
    "RMU",
    "SCRUB",
    "UNDIAL",
    "WGA",
    "BadTeaching",
    "ForgetRetainLoss",
    "GradAscent",
    "GradDiff",
    "IdkDPO",
    "LossOutput",
    "RandomLabel",
    "SalUn",
    "SatImp",
    "SimNPO",
    "SuperLoss",
    "UnlearningLoss",
    "WrapperLoss",
    "activation_loss",
    "dpo_loss",
    "kl_to_reference",
    "model_gradients",
    "npo_loss",
    "retain_term",
    "simnpo_loss",
    "superloss",
    "superloss_sigma",
]
