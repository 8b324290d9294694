"""What a study does with a curve once it is tested, and the merges: stages that read finished stages' outputs.

- a **merge** (``merges:``): task arithmetic or TIES of endpoints' task vectors relative to the base
  (:mod:`mcu_lightning.curves.merge`), saved as a model folder and tested like an endpoint (``merges/<name>/``);
- an **ensemble** (``curves[].ensembles``): K points of the curve, the mean of their probabilities
  (:class:`~mcu_lightning.curves.Ensemble`), evaluated by the study's suite (``curves/<curve>/ensemble-<name>/``);
- the **plane** (``curves[].plane``): the suite on a G x G grid of the plane through the curve's three bends
  (:func:`~mcu_lightning.modules.metric_plane`), as CSV, JSON and contour figures (``curves/<curve>/plane/``);
- **export_best** (``curves[].export_best``): the interior t of the test grid best by a metric's direction, written
  as a model folder like ``mcu export`` writes one (``curves/<curve>/best-<metric>/``, with ``best.json``).

The trained curve is read back from its stage's ``checkpoints/last.ckpt`` (written at the end of its fit); a
training-free path is rebuilt from its spec. Every function here takes the study's
:class:`~mcu_lightning.study.context.StageContext`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.direction import is_direction
from mcu_lightning.core.names import (
    BARRIER_JSON,
    BEST_JSON,
    CHECKPOINTS_DIR,
    CURVE_METRICS_CSV,
    LAST_CHECKPOINT,
    MEMBERS_JSON,
    MODEL_DIR,
    PLANE_DIR,
    TEST_METRICS,
    TOKENIZER_CONFIG,
)
from mcu_lightning.core.storage import read_json
from mcu_lightning.curves import barrier
from mcu_lightning.study.context import StageContext
from mcu_lightning.study.schema import CurveSpec, EnsembleSpec, Merge, StudyError, is_path
from mcu_lightning.study.stages import curve_module


def best_folder_name(metric: str) -> str:
    return "best-" + metric.replace("/", "_")


def _tokenizer_of(path: str) -> Any:
    """The tokenizer saved with a model folder, or ``None`` (a classifier folder has none)."""
    if not (Path(path) / TOKENIZER_CONFIG).is_file():
        return None
    from mcu_lightning.models.hf import load_tokenizer

    return load_tokenizer(path)


def run_merge(context: StageContext, merge: Merge) -> dict[str, Any]:
    """Merge the endpoints' task vectors relative to the base, save the model (with the base's tokenizer), test it."""
    from mcu_lightning.curves.merge import merged_model, task_arithmetic, ties
    from mcu_lightning.models.io import save_model
    from mcu_lightning.modules.finetune import FineTuneModule

    base = context.model_path("base")
    endpoints = [context.model_path(node) for node in merge.endpoints]
    started = time.perf_counter()
    if merge.method == "task_arithmetic":
        state = task_arithmetic(endpoints, base, scale=merge.scale)
    else:
        state = ties(endpoints, base, density=merge.density, scale=merge.scale)
    directory = context.merge_dir(merge)
    folder = directory / MODEL_DIR
    save_model(merged_model(base, state), folder, tokenizer=_tokenizer_of(base))
    merge_s = time.perf_counter() - started
    suite = context.suite(with_oracle=True)
    module = FineTuneModule(str(folder), suite=suite, output_dir=str(directory), export=False, probes=context.probes())
    return {"merge_seconds": merge_s, **context.test_only(directory, module)}


def trained_curve(context: StageContext, curve: CurveSpec) -> Any:
    """The curve's :class:`CurveModule` as its stage left it: the fitted checkpoint, or a path rebuilt."""
    if is_path(curve):
        return curve_module(context, curve).eval()
    from mcu_lightning.modules.export import load_curve_checkpoint

    last = context.curve_dir(curve) / CHECKPOINTS_DIR / LAST_CHECKPOINT
    if not last.is_file():
        raise StudyError(f"curve '{curve.name}' has no {last}; run its stage first (`--only {curve.name}`)")
    module, _ = load_curve_checkpoint(last)
    return module


def evaluation_batches(context: StageContext, suite: Any) -> tuple[list[tuple[str, Any]], list[Any]]:
    """Every evaluation split's batches as ``(split, batch)`` pairs (what a module's test collects), the retain
    batches for a BatchNorm recompute, and the suite bound to the data's tokenizer."""
    datamodule = context.datamodule()
    datamodule.prepare_data()
    datamodule.setup("test")
    suite.bind(getattr(datamodule, "tokenizer", None))
    suite.set_compat(getattr(datamodule, "compat", None))
    batches = [(split, batch) for split in datamodule.eval_splits for batch in datamodule.eval_dataloader(split)]
    retain = [batch for split, batch in batches if split == "retain"]
    limit = context.study.evaluation.bn_batches
    return batches, retain[:limit] if limit is not None else retain


def evaluation_precision(context: StageContext) -> Any:
    """The study's Trainer precision (Lightning's own plugin) around an evaluation that runs outside a Trainer, so an
    ensemble or a plane point is scored as the curve's points and the endpoints were (``bf16-mixed``: autocast)."""
    from mcu_lightning.study.schema import Training

    return context.trainer(context.root, Training()).precision_plugin.test_step_context()


def run_ensemble(context: StageContext, curve: CurveSpec, spec: EnsembleSpec) -> dict[str, Any]:
    """Evaluate the ensemble of the curve's points ``spec.ts`` (or ``spec.points`` evenly spaced) with the suite."""
    import torch

    from mcu_lightning.curves import Ensemble, ensemble_ts
    from mcu_lightning.metrics.suite import evaluate_suite

    module = trained_curve(context, curve)
    suite = context.suite(with_oracle=True)
    batches, retain = evaluation_batches(context, suite)
    ts = ensemble_ts(spec.ts if spec.ts is not None else spec.points)
    started = time.perf_counter()
    ensemble = Ensemble.from_curve(module.curve, ts, working=module.template, bn_batches=retain)
    with torch.no_grad(), evaluation_precision(context):
        result = evaluate_suite(ensemble, suite, batches)
    directory = context.use_dir(curve, f"ensemble-{spec.name}")
    directory.mkdir(parents=True, exist_ok=True)
    result.to_json(directory / TEST_METRICS)
    atomic_write(directory / MEMBERS_JSON, json.dumps({"curve": curve.name, "ts": ts}, indent=2).encode())
    return {"test_seconds": time.perf_counter() - started}


def run_plane(context: StageContext, curve: CurveSpec) -> dict[str, Any]:
    """The chosen metrics on the plane through the curve's three bends, with its files and figures."""
    from mcu_lightning.modules.plane import metric_plane
    from mcu_lightning.report.figure_style import curve_title
    from mcu_lightning.report.plane import write_plane_report

    assert curve.plane is not None
    module = trained_curve(context, curve)
    suite = context.suite(with_oracle=True)
    batches, retain = evaluation_batches(context, suite)
    started = time.perf_counter()
    with evaluation_precision(context):
        plane = metric_plane(
            module.curve,
            suite,
            batches,
            metrics=curve.plane.metrics,
            points=curve.plane.points,
            margins=curve.plane.margin,
            working=module.template,
            bn_batches=retain,
        )
    write_plane_report(plane, context.use_dir(curve, PLANE_DIR), title=curve_title(curve.name, curve.endpoints))
    return {"plane_seconds": time.perf_counter() - started}


def best_interior(rows: list[dict[str, float]], metric: str, direction: str) -> tuple[float, float] | None:
    """``(t, value)`` of the interior row best by ``direction`` among those with a finite value
    (:func:`mcu_lightning.curves.barrier.best_interior`)."""
    values = [row[metric] if math.isfinite(row[metric]) else math.nan for row in rows]
    return barrier.best_interior([row["t"] for row in rows], values, direction)


def run_export_best(context: StageContext, curve: CurveSpec, metric: str) -> dict[str, Any]:
    """Export the curve's interior point best by ``metric`` (its direction from the curve's barrier summary)."""
    from mcu_lightning.modules.export import export_point
    from mcu_lightning.report.curve import read_csv

    folder = context.curve_dir(curve)
    summary = read_json(folder / BARRIER_JSON)
    direction = summary.get("metrics", {}).get(metric, {}).get("direction", "none")
    if direction == "none" or not is_direction(direction):
        raise StudyError(
            f"curve '{curve.name}': export_best {metric} has no better direction ({direction}); name a metric the "
            "suite ranks (e.g. model_utility, forget_quality)"
        )
    _, rows = read_csv(folder / CURVE_METRICS_CSV)
    if metric not in rows[0]:
        raise StudyError(f"curve '{curve.name}': export_best {metric}: the curve's test reported no such metric")
    found = best_interior(rows, metric, direction)
    if found is None:
        raise StudyError(f"curve '{curve.name}': export_best {metric}: no interior t of the grid has a finite value")
    t, value = found
    module = trained_curve(context, curve)
    started = time.perf_counter()
    directory = context.use_dir(curve, best_folder_name(metric))
    from mcu_lightning.curves import has_batchnorm

    bn = evaluation_batches(context, context.suite(with_oracle=False))[1] if has_batchnorm(module.template) else []
    tokenizer = _tokenizer_of(context.model_path(curve.endpoints[0]))
    export_point(module, t, directory / MODEL_DIR, bn_batches=bn, tokenizer=tokenizer)
    record = {
        "curve": curve.name,
        "metric": metric,
        "direction": direction,
        "t": t,
        "value": value,
        "folder": MODEL_DIR,
    }
    atomic_write(directory / BEST_JSON, json.dumps(record, indent=2).encode())
    return {"export_seconds": time.perf_counter() - started}
