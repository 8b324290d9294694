"""Weight-space curves between two models, for any ``nn.Module`` (Garipov et al., 2018; Cheng & Amiri, 2025)."""

from mcu_lightning.curves.barrier import (
    CurveSummary,
    barrier_vs_line,
    barrier_vs_max_end,
    barrier_vs_mean_end,
    summarize_series,
)
from mcu_lightning.curves.batchnorm import has_batchnorm, recompute_batchnorm, recompute_curve_batchnorm
from mcu_lightning.curves.curve import Curve
from mcu_lightning.curves.lora import LoraDeltaCurve, load_adapter_state, lora_curve
from mcu_lightning.curves.sampling import ClippedNormal, Stratified, TSampler, Uniform, t_grid
from mcu_lightning.curves.shapes import Bezier, CurveShape, Linear, PolyChain
from mcu_lightning.curves.template import TemplateCurve, enable_gradient_checkpointing

__all__ = [
    "Bezier",
    "ClippedNormal",
    "Curve",
    "CurveShape",
    "CurveSummary",
    "Linear",
    "LoraDeltaCurve",
    "PolyChain",
    "Stratified",
    "TSampler",
    "TemplateCurve",
    "Uniform",
    "barrier_vs_line",
    "barrier_vs_max_end",
    "barrier_vs_mean_end",
    "enable_gradient_checkpointing",
    "has_batchnorm",
    "load_adapter_state",
    "lora_curve",
    "recompute_batchnorm",
    "recompute_curve_batchnorm",
    "summarize_series",
    "t_grid",
]
