"""Robustness probes: evaluation beyond the metric suite at any model (theta(t), an endpoint, the base).

Each probe is YAML-constructible (``probes: [{class_path: mcu_lightning.probes.Relearn, init_args: {steps: 10}}]``)
and writes its numbers as ``probe/<name>/<metric>``.
"""

from __future__ import annotations

from mcu_lightning.core.names import PROBE_PREFIX
from mcu_lightning.probes.base import Probe, ProbeContext, check_probes, run_probes
from mcu_lightning.probes.distance import Distance, l2_distance, task_vector_cosine
from mcu_lightning.probes.quantize import Quantize, fake_quantize, quantize_weights
from mcu_lightning.probes.relearn import Relearn
from mcu_lightning.probes.sharpness import Sharpness, hutchinson_trace, top_eigenvalue

__all__ = [
    "PROBE_PREFIX",
    "Distance",
    "Probe",
    "ProbeContext",
    "Quantize",
    "Relearn",
    "Sharpness",
    "check_probes",
    "fake_quantize",
    "hutchinson_trace",
    "l2_distance",
    "quantize_weights",
    "run_probes",
    "task_vector_cosine",
    "top_eigenvalue",
]
