"""``mcu experiment --smoke``: a study at a reduced size, to check that a config runs end to end.

Every stage runs what the config says (the same data, models, losses, curves, probes, merges, ensembles, plane and
exports, in the same order), only shorter: each training stops after :data:`STEPS` optimizer steps,
curves are tested at :data:`EVAL_TS` points, relearning probes take :data:`STEPS` steps, sharpness probes one power
step and one Hutchinson sample, generation :data:`NEW_TOKENS` tokens, the metric plane a 3 x 3 grid, an ensemble at
most :data:`EVAL_TS` members. The numbers mean nothing; the run shows that the config builds, trains, tests and
reports. The shipped study configs are run this way by ``tests/study/test_shipped_studies.py``.
"""

from __future__ import annotations

import copy
from typing import Any

from mcu_lightning.study.schema import Study, Training, is_path

STEPS = 2
EVAL_TS = 3
NEW_TOKENS = 4


def _short(training: Training) -> Training:
    cut = copy.deepcopy(training)
    cut.max_epochs = None  # max_steps alone bounds it (a study refuses both)
    cut.max_steps = STEPS
    cut.warmup_steps = 0
    return cut


def _cut_init_args(spec: dict[str, Any], limits: dict[str, int]) -> dict[str, Any]:
    """``spec`` with each of ``limits``' init args lowered to the limit (left alone where already below it)."""
    spec = copy.deepcopy(spec)
    args = spec.setdefault("init_args", {})
    for key, limit in limits.items():
        args[key] = min(int(args.get(key, limit)), limit)
    return spec


def smoke(study: Study) -> Study:
    """The same study, every stage cut to a few steps and points (see the module docstring)."""
    study = copy.deepcopy(study)
    for stage in (study.base, study.oracle):
        stage.train = _short(stage.train)
    for endpoint in study.endpoints:
        endpoint.train = _short(endpoint.train)
        if endpoint.during_training is not None:
            endpoint.during_training = {**endpoint.during_training, "every_n_epochs": 1}
    for curve in study.curves:
        if not is_path(curve):  # a training-free path has no train settings to cut
            curve.train = _short(curve.train)
        if curve.plane is not None:
            curve.plane.points = 3
        for ensemble in curve.ensembles:
            if ensemble.points is not None:
                ensemble.points = min(ensemble.points, EVAL_TS)
    study.evaluation.eval_ts = EVAL_TS
    suite = study.evaluation.suite
    if "max_new_tokens" in (suite.get("init_args") or {}):
        study.evaluation.suite = _cut_init_args(suite, {"max_new_tokens": NEW_TOKENS})
    limits = {"Relearn": {"steps": STEPS}, "Sharpness": {"iterations": 1, "samples": 1}}
    study.evaluation.probes = [
        _cut_init_args(probe, limits[kind])
        if (kind := str(probe.get("class_path", "")).rsplit(".", 1)[-1]) in limits
        else probe
        for probe in study.evaluation.probes
    ]
    study.checkpoint_every_n_steps = None
    return study
