"""mcu-lightning: Mode Connectivity in Unlearning as PyTorch Lightning modules.

The public API is re-exported here and imported lazily, so ``import mcu_lightning`` stays cheap and
``mcu --help`` does not pay for transformers until a command needs it; the ``TYPE_CHECKING`` imports below show
every name to type checkers and IDEs. ``__all__`` and the lazy loader are derived from one table, :data:`_API`
(``tests/test_public_api.py`` keeps the ``TYPE_CHECKING`` imports equal to it).
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
        Line,
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

#: The public API, one table: each module and the names imported from it on first use (``__getattr__``), by topic.
#: ``__all__`` and the lazy loader are derived from it; the ``TYPE_CHECKING`` imports above repeat it for type
#: checkers and IDEs (``tests/test_public_api.py`` keeps them equal).
_API: dict[str, tuple[str, ...]] = {
    # curves, paths, merges, ensembles, the plane's geometry
    "mcu_lightning.curves": (
        "Curve",
        "CurveShape",
        "Line",
        "Linear",  # the former name of Line
        "Bezier",
        "PolyChain",
        "Slerp",
        "SlerpCurve",
        "LoraDeltaCurve",
        "lora_curve",
        "TSampler",
        "Uniform",
        "ClippedNormal",
        "Stratified",
        "t_grid",
        "recompute_batchnorm",
        "summarize_series",
        "Ensemble",
        "plane_basis",
        "task_vectors",
        "task_arithmetic",
        "ties",
        "merged_model",
    ),
    # LightningModules and the metric plane
    "mcu_lightning.modules": (
        "MCUModule",
        "FineTuneModule",
        "UnlearningModule",
        "CurveModule",
        "MetricPlane",
        "metric_plane",
    ),
    # unlearning objectives
    "mcu_lightning.losses": (
        "UnlearningLoss",
        "LossOutput",
        "WrapperLoss",
        "ForgetRetainLoss",
        "NLL",
        "GradAscent",
        "GradDiff",
        "NPO",
        "SimNPO",
        "IdkDPO",
        "RandomLabel",
        "SCRUB",
        "BadTeaching",
        "SalUn",
        "RMU",
        "SuperLoss",
        "UNDIAL",
        "CEU",
        "SatImp",
        "WGA",
        "PDU",
    ),
    # second-order optimizer
    "mcu_lightning.optim": ("SophiaG",),
    # data modules
    "mcu_lightning.data": ("UnlearningDataModule", "QADataModule", "ClassificationDataModule", "CurriculumSampler"),
    # metric suites
    "mcu_lightning.metrics": ("MetricSuite", "QASuite", "ClassificationSuite", "EvalResult", "evaluate_suite"),
    # robustness probes
    "mcu_lightning.probes": ("Probe", "Relearn", "Quantize", "Distance", "Sharpness"),
    # callbacks
    "mcu_lightning.callbacks": ("DivergenceGuard", "EvaluateDuringTraining", "AtomicCheckpointIO"),
    # models
    "mcu_lightning.models": (
        "load_model",
        "save_model",
        "load_state_dict",
        "tiny_causal_lm",
        "causal_lm",
        "SmallConvNet",
    ),
    # the study
    "mcu_lightning.study.schema": ("Study",),
    # the study
    "mcu_lightning.study.runner": ("StudyRunner",),
    # the report
    "mcu_lightning.report": ("write_report",),
}

#: ``name -> module``: where :func:`__getattr__` imports each public name from.
_EXPORTS: dict[str, str] = {name: module for module, names in _API.items() for name in names}


def _order(name: str) -> tuple[int, str]:
    """``CONSTANTS``, then ``Classes``, then ``functions``, each alphabetical (the order ruff sorts ``__all__`` in)."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


__all__ = sorted(_EXPORTS, key=_order)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mcu_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
