"""mcu-lightning: Mode Connectivity in Unlearning as PyTorch Lightning modules.

The public API is re-exported here and imported lazily, so ``import mcu_lightning`` stays cheap and
``mcu --help`` does not pay for transformers until a command needs it; the ``TYPE_CHECKING`` imports below show
every name to type checkers and IDEs (``tests/test_public_api.py`` keeps the two lists equal).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mcu_lightning.core.version import __version__ as __version__

if TYPE_CHECKING:
    from mcu_lightning.callbacks import AtomicCheckpointIO, DivergenceGuard, EvaluateDuringTraining
    from mcu_lightning.curves import (
        Bezier,
        ClippedNormal,
        Curve,
        CurveShape,
        Ensemble,
        Linear,
        LoraDeltaCurve,
        PolyChain,
        Slerp,
        SlerpCurve,
        Stratified,
        TSampler,
        Uniform,
        lora_curve,
        merged_model,
        plane_basis,
        recompute_batchnorm,
        summarize_series,
        t_grid,
        task_arithmetic,
        task_vectors,
        ties,
    )
    from mcu_lightning.data import ClassificationDataModule, CurriculumSampler, QADataModule, UnlearningDataModule
    from mcu_lightning.losses import (
        CEU,
        NLL,
        NPO,
        PDU,
        RMU,
        SCRUB,
        UNDIAL,
        WGA,
        BadTeaching,
        ForgetRetainLoss,
        GradAscent,
        GradDiff,
        IdkDPO,
        LossOutput,
        RandomLabel,
        SalUn,
        SatImp,
        SimNPO,
        SuperLoss,
        UnlearningLoss,
        WrapperLoss,
    )
    from mcu_lightning.metrics import ClassificationSuite, EvalResult, MetricSuite, QASuite, evaluate_suite
    from mcu_lightning.models import SmallConvNet, causal_lm, load_model, load_state_dict, save_model, tiny_causal_lm
    from mcu_lightning.modules import (
        CurveModule,
        FineTuneModule,
        MCUModule,
        MetricPlane,
        UnlearningModule,
        metric_plane,
    )
    from mcu_lightning.optim import SophiaG
    from mcu_lightning.probes import Distance, Probe, Quantize, Relearn, Sharpness
    from mcu_lightning.report import write_report
    from mcu_lightning.study.runner import StudyRunner
    from mcu_lightning.study.schema import Study

_EXPORTS: dict[str, str] = {
    # curves, paths, merges, ensembles, the plane's geometry
    "Curve": "mcu_lightning.curves",
    "CurveShape": "mcu_lightning.curves",
    "Linear": "mcu_lightning.curves",
    "Bezier": "mcu_lightning.curves",
    "PolyChain": "mcu_lightning.curves",
    "Slerp": "mcu_lightning.curves",
    "SlerpCurve": "mcu_lightning.curves",
    "LoraDeltaCurve": "mcu_lightning.curves",
    "lora_curve": "mcu_lightning.curves",
    "TSampler": "mcu_lightning.curves",
    "Uniform": "mcu_lightning.curves",
    "ClippedNormal": "mcu_lightning.curves",
    "Stratified": "mcu_lightning.curves",
    "t_grid": "mcu_lightning.curves",
    "recompute_batchnorm": "mcu_lightning.curves",
    "summarize_series": "mcu_lightning.curves",
    "Ensemble": "mcu_lightning.curves",
    "plane_basis": "mcu_lightning.curves",
    "task_vectors": "mcu_lightning.curves",
    "task_arithmetic": "mcu_lightning.curves",
    "ties": "mcu_lightning.curves",
    "merged_model": "mcu_lightning.curves",
    # LightningModules and the metric plane
    "MCUModule": "mcu_lightning.modules",
    "FineTuneModule": "mcu_lightning.modules",
    "UnlearningModule": "mcu_lightning.modules",
    "CurveModule": "mcu_lightning.modules",
    "MetricPlane": "mcu_lightning.modules",
    "metric_plane": "mcu_lightning.modules",
    # unlearning objectives
    "UnlearningLoss": "mcu_lightning.losses",
    "LossOutput": "mcu_lightning.losses",
    "WrapperLoss": "mcu_lightning.losses",
    "ForgetRetainLoss": "mcu_lightning.losses",
    "NLL": "mcu_lightning.losses",
    "GradAscent": "mcu_lightning.losses",
    "GradDiff": "mcu_lightning.losses",
    "NPO": "mcu_lightning.losses",
    "SimNPO": "mcu_lightning.losses",
    "IdkDPO": "mcu_lightning.losses",
    "RandomLabel": "mcu_lightning.losses",
    "SCRUB": "mcu_lightning.losses",
    "BadTeaching": "mcu_lightning.losses",
    "SalUn": "mcu_lightning.losses",
    "RMU": "mcu_lightning.losses",
    "SuperLoss": "mcu_lightning.losses",
    "UNDIAL": "mcu_lightning.losses",
    "CEU": "mcu_lightning.losses",
    "SatImp": "mcu_lightning.losses",
    "WGA": "mcu_lightning.losses",
    "PDU": "mcu_lightning.losses",
    # second-order optimizer
    "SophiaG": "mcu_lightning.optim",
    # data modules
    "UnlearningDataModule": "mcu_lightning.data",
    "QADataModule": "mcu_lightning.data",
    "ClassificationDataModule": "mcu_lightning.data",
    "CurriculumSampler": "mcu_lightning.data",
    # metric suites
    "MetricSuite": "mcu_lightning.metrics",
    "QASuite": "mcu_lightning.metrics",
    "ClassificationSuite": "mcu_lightning.metrics",
    "EvalResult": "mcu_lightning.metrics",
    "evaluate_suite": "mcu_lightning.metrics",
    # robustness probes
    "Probe": "mcu_lightning.probes",
    "Relearn": "mcu_lightning.probes",
    "Quantize": "mcu_lightning.probes",
    "Distance": "mcu_lightning.probes",
    "Sharpness": "mcu_lightning.probes",
    # callbacks
    "DivergenceGuard": "mcu_lightning.callbacks",
    "EvaluateDuringTraining": "mcu_lightning.callbacks",
    "AtomicCheckpointIO": "mcu_lightning.callbacks",
    # models
    "load_model": "mcu_lightning.models",
    "save_model": "mcu_lightning.models",
    "load_state_dict": "mcu_lightning.models",
    "tiny_causal_lm": "mcu_lightning.models",
    "causal_lm": "mcu_lightning.models",
    "SmallConvNet": "mcu_lightning.models",
    # the study
    "Study": "mcu_lightning.study.schema",
    "StudyRunner": "mcu_lightning.study.runner",
    # the report
    "write_report": "mcu_lightning.report",
}

__all__ = [
    "CEU",
    "NLL",
    "NPO",
    "PDU",
    "RMU",
    "SCRUB",
    "UNDIAL",
    "WGA",
    "AtomicCheckpointIO",
    "BadTeaching",
    "Bezier",
    "ClassificationDataModule",
    "ClassificationSuite",
    "ClippedNormal",
    "CurriculumSampler",
    "Curve",
    "CurveModule",
    "CurveShape",
    "Distance",
    "DivergenceGuard",
    "Ensemble",
    "EvalResult",
    "EvaluateDuringTraining",
    "FineTuneModule",
    "ForgetRetainLoss",
    "GradAscent",
    "GradDiff",
    "IdkDPO",
    "Linear",
    "LoraDeltaCurve",
    "LossOutput",
    "MCUModule",
    "MetricPlane",
    "MetricSuite",
    "PolyChain",
    "Probe",
    "QADataModule",
    "QASuite",
    "Quantize",
    "RandomLabel",
    "Relearn",
    "SalUn",
    "SatImp",
    "Sharpness",
    "SimNPO",
    "Slerp",
    "SlerpCurve",
    "SmallConvNet",
    "SophiaG",
    "Stratified",
    "Study",
    "StudyRunner",
    "SuperLoss",
    "TSampler",
    "Uniform",
    "UnlearningDataModule",
    "UnlearningLoss",
    "UnlearningModule",
    "WrapperLoss",
    "causal_lm",
    "evaluate_suite",
    "load_model",
    "load_state_dict",
    "lora_curve",
    "merged_model",
    "metric_plane",
    "plane_basis",
    "recompute_batchnorm",
    "save_model",
    "summarize_series",
    "t_grid",
    "task_arithmetic",
    "task_vectors",
    "ties",
    "tiny_causal_lm",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mcu_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
