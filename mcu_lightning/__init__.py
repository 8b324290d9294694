"""mcu-lightning: Mode Connectivity in Unlearning as PyTorch Lightning modules.

The public API is re-exported here and imported lazily, so ``import mcu_lightning`` stays cheap and
``mcu --help`` does not pay for transformers until a command needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # curves
    "Curve": "mcu_lightning.curves",
    "CurveShape": "mcu_lightning.curves",
    "Linear": "mcu_lightning.curves",
    "Bezier": "mcu_lightning.curves",
    "PolyChain": "mcu_lightning.curves",
    "Slerp": "mcu_lightning.curves",
    "SlerpCurve": "mcu_lightning.curves",
    "task_arithmetic": "mcu_lightning.curves",
    "ties": "mcu_lightning.curves",
    "merged_model": "mcu_lightning.curves",
    "TSampler": "mcu_lightning.curves",
    "Uniform": "mcu_lightning.curves",
    "ClippedNormal": "mcu_lightning.curves",
    "Stratified": "mcu_lightning.curves",
    "recompute_batchnorm": "mcu_lightning.curves",
    "summarize_series": "mcu_lightning.curves",
    # modules
    "MCUModule": "mcu_lightning.modules",
    "FineTuneModule": "mcu_lightning.modules",
    "UnlearningModule": "mcu_lightning.modules",
    "CurveModule": "mcu_lightning.modules",
    # losses
    "UnlearningLoss": "mcu_lightning.losses",
    "LossOutput": "mcu_lightning.losses",
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
    "SuperLoss": "mcu_lightning.losses",
    # optim
    "SophiaG": "mcu_lightning.optim",
    # data
    "UnlearningDataModule": "mcu_lightning.data",
    "QADataModule": "mcu_lightning.data",
    "ClassificationDataModule": "mcu_lightning.data",
    "CurriculumSampler": "mcu_lightning.data",
    # metrics
    "MetricSuite": "mcu_lightning.metrics",
    "QASuite": "mcu_lightning.metrics",
    "ClassificationSuite": "mcu_lightning.metrics",
    "EvalResult": "mcu_lightning.metrics",
    # probes
    "Probe": "mcu_lightning.probes",
    "Relearn": "mcu_lightning.probes",
    "Quantize": "mcu_lightning.probes",
    "Distance": "mcu_lightning.probes",
    "Sharpness": "mcu_lightning.probes",
    # models
    "load_model": "mcu_lightning.models",
    "save_model": "mcu_lightning.models",
    "load_state_dict": "mcu_lightning.models",
    "tiny_causal_lm": "mcu_lightning.models",
    "causal_lm": "mcu_lightning.models",
    "SmallConvNet": "mcu_lightning.models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mcu_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
