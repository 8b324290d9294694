"""open-unlearning's TOFU result files, written from and read into an :class:`EvalResult`.

open-unlearning (locuslab/open-unlearning, ``src/evals/base.py``) writes two files per evaluation:
``TOFU_EVAL.json``, ``{metric: {"agg_value": float | null, "value_by_index": {index: {key: value}}}}`` with its
metric names (``configs/eval/tofu_metrics/*.yaml``: ``forget_Q_A_Prob``, ``forget_truth_ratio``, ``model_utility``,
``privleak``, ...), and ``TOFU_SUMMARY.json``, ``{metric: agg_value}`` for the metrics its TOFU config lists. A
retain model's ``TOFU_EVAL.json`` is the "retain logs" its forget quality (``forget_truth_ratio`` scores) and
privleak (``mia_min_k`` AUC) read, so :func:`from_open_unlearning` turns one into this project's oracle.

Per-sample keys follow open-unlearning's handlers: ``probability`` -> ``{"prob", "avg_loss"}``, ``rouge`` ->
``{"rougeL_recall"}``, ``truth_ratio`` / ``extraction_strength`` / ``exact_memorization`` / MIA scores ->
``{"score"}``. MIA metrics keep open-unlearning's layout: ``{"agg_value": auc, "auc": auc, "forget":
{"value_by_index": ...}, "holdout": {"value_by_index": ...}}``. Non-finite values are written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.metrics.suite import EvalResult

EVAL_FILE = "TOFU_EVAL.json"
SUMMARY_FILE = "TOFU_SUMMARY.json"

#: open-unlearning's short split prefixes.
PREFIXES: dict[str, str] = {"forget": "forget", "retain": "retain", "real_authors": "ra", "world_facts": "wf"}
#: The metrics open-unlearning's TOFU config (configs/eval/tofu.yaml) evaluates and so summarises.
SUMMARY_METRICS: tuple[str, ...] = (
    "extraction_strength",
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "forget_quality",
    "forget_truth_ratio",
    "model_utility",
    "privleak",
)
#: Per-split metrics: open-unlearning suffix -> (our per-sample column, open-unlearning's per-sample key).
_SPLIT_METRICS: dict[str, tuple[str, str]] = {
    "Q_A_Prob": ("prob", "prob"),
    "Q_A_ROUGE": ("rouge", "rougeL_recall"),
    "Truth_Ratio": ("truth_ratio", "score"),
}
#: Bare metrics of the forget split (open-unlearning evaluates them on ``{forget_split}_perturbed``).
_FORGET_METRICS: tuple[str, ...] = ("extraction_strength", "exact_memorization")
#: open-unlearning's MIA metric -> (our AUC aggregate, our per-sample column).
_MIA: dict[str, tuple[str, str]] = {
    "mia_loss": ("mia_loss_auc", "loss"),
    "mia_zlib": ("mia_zlib_auc", "mia_zlib"),
    "mia_min_k": ("mia_min_k_auc", "mia_min_k"),
}
_CROSS_SPLIT: tuple[str, ...] = ("forget_quality", "model_utility", "privleak")


def _value(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _by_index(table: Mapping[str, Sequence[float]], columns: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``{str(index): {key: value}}`` from our per-sample columns (``columns``: our column -> their key)."""
    rows: dict[str, dict[str, Any]] = {}
    for i, index in enumerate(table.get("index", [])):
        rows[str(int(index))] = {key: _value(table[column][i]) for column, key in columns.items() if column in table}
    return rows


def split_metric_name(split: str, suffix: str, normalised: bool = False) -> str:
    """open-unlearning's name of a per-split metric: ``ra_Q_A_Prob_normalised``, ``forget_truth_ratio``, ..."""
    if split == "forget" and suffix == "Truth_Ratio":
        return "forget_truth_ratio"  # its one lower-case name (configs/eval/tofu_metrics/forget_Truth_Ratio.yaml)
    return f"{PREFIXES[split]}_{suffix}" + ("_normalised" if normalised and suffix == "Q_A_Prob" else "")


def to_open_unlearning(
    result: EvalResult,
    normalised_splits: Sequence[str] = ("real_authors", "world_facts"),
    mia_splits: tuple[str, str] = ("forget", "holdout"),
) -> tuple[dict[str, Any], dict[str, float | None]]:
    """``(TOFU_EVAL, TOFU_SUMMARY)`` payloads of one QA result, in open-unlearning's schema and names."""
    logs: dict[str, Any] = {}
    aggregates, per_sample = result.aggregates, result.per_sample
    for split, prefix in PREFIXES.items():
        table = per_sample.get(split, {})
        for suffix, (column, key) in _SPLIT_METRICS.items():
            name = split_metric_name(split, suffix, split in normalised_splits)
            aggregate = aggregates.get(f"{split}/{column}")
            if aggregate is None and column not in table:
                continue
            entry: dict[str, Any] = {"agg_value": _value(aggregate)}
            columns = {column: key, "loss": "avg_loss"} if column == "prob" else {column: key}
            if column in table:
                entry["value_by_index"] = _by_index(table, columns)
            logs[name] = entry
        if prefix != "forget":
            continue
        for name in _FORGET_METRICS:
            if f"forget/{name}" in aggregates:
                logs[name] = {"agg_value": _value(aggregates[f"forget/{name}"])}
                if name in table:
                    logs[name]["value_by_index"] = _by_index(table, {name: "score"})
    members, others = mia_splits
    for name, (auc_name, column) in _MIA.items():
        if auc_name in aggregates:
            auc = _value(aggregates[auc_name])
            entry = {"agg_value": auc, "auc": auc}
            for role, split in (("forget", members), ("holdout", others)):
                table = per_sample.get(split, {})
                if column in table:
                    entry[role] = {"value_by_index": _by_index(table, {column: "score"})}
            logs[name] = entry
    for name in _CROSS_SPLIT:
        if name in aggregates:
            logs[name] = {"agg_value": _value(aggregates[name])}
    logs = dict(sorted(logs.items()))  # open-unlearning's save_logs sorts by name
    summary = {name: logs[name]["agg_value"] for name in SUMMARY_METRICS if name in logs}
    return logs, summary


def write_open_unlearning(result: EvalResult, folder: str | os.PathLike, **options: Any) -> tuple[Path, Path]:
    """Write ``TOFU_EVAL.json`` and ``TOFU_SUMMARY.json`` into ``folder`` (atomically); return their paths."""
    logs, summary = to_open_unlearning(result, **options)
    folder = Path(folder)
    eval_path = atomic_write(folder / EVAL_FILE, json.dumps(logs, indent=4, allow_nan=False).encode())
    summary_path = atomic_write(folder / SUMMARY_FILE, json.dumps(summary, indent=4, allow_nan=False).encode())
    return eval_path, summary_path


def is_open_unlearning(payload: Any) -> bool:
    """Whether a loaded JSON is an open-unlearning eval log (metric -> ``{"agg_value": ...}``), not an EvalResult."""
    return (
        isinstance(payload, Mapping)
        and "aggregates" not in payload
        and any(isinstance(v, Mapping) and "agg_value" in v for v in payload.values())
    )


def _scores(entry: Any, key: str) -> tuple[list[float], list[float]] | None:
    """``(index, values)`` of a ``value_by_index`` block, sorted by index; entries without the key are NaN."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("value_by_index"), Mapping):
        return None
    rows = sorted(entry["value_by_index"].items(), key=lambda kv: int(kv[0]))
    values = [v.get(key) if isinstance(v, Mapping) else None for _, v in rows]
    return [float(int(i)) for i, _ in rows], [math.nan if v is None else float(v) for v in values]


def from_open_unlearning(payload: Mapping[str, Any], source: str = "the file") -> EvalResult:
    """An :class:`EvalResult` from an open-unlearning ``TOFU_EVAL.json`` payload (its retain logs, for example)."""
    aggregates: dict[str, float] = {}
    per_sample: dict[str, dict[str, list[float]]] = {}

    def put(split: str, column: str, scores: tuple[list[float], list[float]] | None) -> None:
        if scores is None:
            return
        table = per_sample.setdefault(split, {})
        index, values = scores
        if "index" in table and table["index"] != index:
            raise ValueError(f"{source}: the {split} metrics of the open-unlearning log disagree on sample indices")
        table["index"], table[column] = index, values

    for split in PREFIXES:
        for suffix, (column, key) in _SPLIT_METRICS.items():
            for normalised in (False, True):
                name = split_metric_name(split, suffix, normalised)
                if name in payload:
                    value = payload[name].get("agg_value")
                    aggregates[f"{split}/{column}"] = math.nan if value is None else float(value)
                    put(split, column, _scores(payload[name], key))
                    if column == "prob":
                        put(split, "loss", _scores(payload[name], "avg_loss"))
    for name in _FORGET_METRICS:
        if name in payload:
            value = payload[name].get("agg_value")
            aggregates[f"forget/{name}"] = math.nan if value is None else float(value)
            put("forget", name, _scores(payload[name], "score"))
    for name, (auc_name, _) in _MIA.items():
        if name in payload:
            value = payload[name].get("agg_value")
            aggregates[auc_name] = math.nan if value is None else float(value)
    for name in _CROSS_SPLIT:
        if name in payload:
            value = payload[name].get("agg_value")
            aggregates[name] = math.nan if value is None else float(value)
    if "forget_truth_ratio" not in payload and "mia_min_k" not in payload:
        raise ValueError(
            f"{source} is an open-unlearning log without 'forget_truth_ratio' or 'mia_min_k'; an oracle needs the "
            "retain model's TOFU_EVAL.json with them (open-unlearning's TOFU eval writes both)"
        )
    return EvalResult(aggregates=aggregates, per_sample=per_sample)
