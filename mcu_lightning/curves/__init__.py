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
from mcu_lightning.curves.ensemble import (
    CurvePoint,
    Ensemble,
    Member,
    ModuleMember,
    StateMember,
    as_member,
    ensemble_ts,
)
from mcu_lightning.curves.lora import LoraDeltaCurve, is_base_folder, load_adapter_state, lora_curve, zero_adapter_state
from mcu_lightning.curves.merge import merged_model, task_arithmetic, task_vectors, ties
from mcu_lightning.curves.plane import (
    PlaneBasis,
    curve_projection,
    plane_basis,
    plane_grid,
)
from mcu_lightning.curves.sampling import ClippedNormal, Stratified, TSampler, Uniform, t_grid
from mcu_lightning.curves.shapes import Bezier, CurveShape, Line, Linear, PolyChain
from mcu_lightning.curves.slerp import Slerp, SlerpCurve
from mcu_lightning.curves.template import TemplateCurve, enable_gradient_checkpointing

__all__ = [
    "Bezier",
    "ClippedNormal",
    "Curve",
    "CurvePoint",
    "CurveShape",
    "CurveSummary",
    "Ensemble",
    "Line",
    "Linear",
    "LoraDeltaCurve",
    "Member",
    "ModuleMember",
    "PlaneBasis",
    "PolyChain",
    "Slerp",
    "SlerpCurve",
    "StateMember",
    "Stratified",
    "TSampler",
    "TemplateCurve",
    "Uniform",
    "as_member",
    "barrier_vs_line",
    "barrier_vs_max_end",
    "barrier_vs_mean_end",
    "curve_projection",
    "enable_gradient_checkpointing",
    "ensemble_ts",
    "has_batchnorm",
    "is_base_folder",
    "load_adapter_state",
    "lora_curve",
    "merged_model",
    "plane_basis",
    "plane_grid",
    "recompute_batchnorm",
    "recompute_curve_batchnorm",
    "summarize_series",
    "t_grid",
    "task_arithmetic",
    "task_vectors",
    "ties",
    "zero_adapter_state",
]
