"""open-unlearning's TOFU result files, written from and read into an :class:`EvalResult`.

open-unlearning (locuslab/open-unlearning, ``src/evals/base.py``) writes two files per evaluation:
``TOFU_EVAL.json``, ``{metric: {"agg_value": float | null, "value_by_index": {index: {key: value}}}}`` with its
metric names (``configs/eval/tofu_metrics/*.yaml``: ``forget_Q_A_Prob``, ``forget_truth_ratio``, ``model_utility``,
``privleak``, ...) and every pre-computed metric under its own name (its evaluator caches them in the same logs:
``forget_Q_A_PARA_Prob``, ``forget_Q_A_PERT_Prob``, ``ra_Q_A_Prob``, ...), and ``TOFU_SUMMARY.json``,
``{metric: agg_value}`` for the metrics its TOFU config lists whose value is not null. A retain model's
``TOFU_EVAL.json`` is the "retain logs" its forget quality (``forget_truth_ratio`` scores) and privleak
(``mia_min_k`` AUC) read, so :func:`from_open_unlearning` turns one into this project's oracle.

Per-sample keys follow open-unlearning's handlers: ``probability`` -> ``{"prob", "avg_loss"}`` (lists of K values
for the perturbed answers), ``probability_w_options`` -> ``{"prob"}``, ``rouge`` -> ``{"rouge1_recall",
"rougeL_f1", "rougeL_recall", "input", "ground_truth", "generation"}``, ``truth_ratio`` / ``extraction_strength`` /
``exact_memorization`` / MIA scores -> ``{"score"}``. MIA metrics keep its layout: ``{"agg_value": auc, "auc": auc,
"forget": {"agg_value": mean score, "value_by_index": ...}, "holdout": {...}}``. A value that cannot be computed
(NaN here) is written as ``null``, as open-unlearning writes a missing one, and left out of the summary, as its
``summarize`` leaves out null aggregates.

Splits whose ``prob`` is normalised (real authors, world facts) keep both entries apart, as open-unlearning does:
``ra_Q_A_Prob`` holds the raw probability and loss of the true answer, ``ra_Q_A_Prob_normalised`` the normalised
probability; reading a file puts the first into the ``loss`` column and the second into ``prob``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.names import TOFU_EVAL_JSON, TOFU_SUMMARY_JSON
from mcu_lightning.metrics.suite import EvalResult

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
#: open-unlearning's MIA metric -> (our AUC aggregate, our per-sample column).
_MIA: dict[str, tuple[str, str]] = {
    "mia_loss": ("mia_loss_auc", "loss"),
    "mia_zlib": ("mia_zlib_auc", "mia_zlib"),
    "mia_min_k": ("mia_min_k_auc", "mia_min_k"),
    "mia_min_k_plus_plus": ("mia_min_k_plus_plus_auc", "mia_min_k_plus_plus"),
    "mia_gradnorm": ("mia_gradnorm_auc", "mia_gradnorm"),
    "mia_reference": ("mia_reference_auc", "mia_reference"),
}
#: Bare metrics of the forget split (open-unlearning evaluates them on ``{forget_split}_perturbed``).
_FORGET_METRICS: tuple[str, ...] = ("extraction_strength", "exact_memorization")
_CROSS_SPLIT: tuple[str, ...] = ("forget_quality", "model_utility", "privleak")
#: The ROUGE entry: our per-sample column -> open-unlearning's key (the suite stores them under these columns);
#: and the text records it carries.
ROUGE_COLUMNS: dict[str, str] = {"rouge1_recall": "rouge1_recall", "rougeL_f1": "rougeL_f1", "rouge": "rougeL_recall"}
_ROUGE_TEXTS: tuple[str, ...] = ("input", "ground_truth", "generation")


def _value(value: Any) -> Any:
    """JSON value as open-unlearning writes it: NaN/inf -> null, lists element-wise, strings as they are."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    return None if value is None or not math.isfinite(value) else float(value)


def _nan(value: Any) -> Any:
    """The inverse of :func:`_value` for numbers: null -> NaN, lists element-wise."""
    if isinstance(value, (list, tuple)):
        return [_nan(v) for v in value]
    return math.nan if value is None else float(value)


def _prob(loss: float) -> float:
    """open-unlearning's ``prob`` of a mean answer loss, ``exp(-avg_loss)`` (NaN where the loss is not finite)."""
    return math.exp(-loss) if math.isfinite(loss) else math.nan


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _by_index(
    table: Mapping[str, Sequence[Any]],
    columns: Mapping[str, str],
    records: Mapping[str, Sequence[Any]] | None = None,
    texts: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """``{str(index): {key: value}}`` from our per-sample columns (``columns``: our column -> their key) and the
    record columns ``texts`` (same name there), matched by sample index."""
    position = {int(i): k for k, i in enumerate((records or {}).get("index", []))}
    rows: dict[str, dict[str, Any]] = {}
    for i, index in enumerate(table.get("index", [])):
        row = {key: _value(table[column][i]) for column, key in columns.items() if column in table}
        k = position.get(int(index))
        for name in texts:
            if k is not None and name in records:
                row[name] = _value(records[name][k])
        rows[str(int(index))] = row
    return rows


def split_metric_name(split: str, suffix: str, normalised: bool = False) -> str:
    """open-unlearning's name of a per-split metric: ``ra_Q_A_Prob_normalised``, ``forget_truth_ratio``, ..."""
    if split == "forget" and suffix == "Truth_Ratio":
        return "forget_truth_ratio"  # its one lower-case name (configs/eval/tofu_metrics/forget_Truth_Ratio.yaml)
    return f"{PREFIXES[split]}_{suffix}" + ("_normalised" if normalised and suffix == "Q_A_Prob" else "")


def _probability_entries(
    split: str, table: Mapping[str, Sequence[float]], aggregates: Mapping[str, float], normalised: bool
) -> dict[str, Any]:
    """``{p}_Q_A_Prob`` (the true answer's probability and loss) and, for a normalised split, also
    ``{p}_Q_A_Prob_normalised`` (``probability_w_options``: ``prob`` only)."""
    entries: dict[str, Any] = {}
    raw = split_metric_name(split, "Q_A_Prob")
    if normalised:
        if "loss" in table:
            probs = [_prob(v) for v in table["loss"]]
            raw_table = {"index": table["index"], "prob": probs, "loss": table["loss"]}
            entries[raw] = {
                "agg_value": _value(_mean(probs)),
                "value_by_index": _by_index(raw_table, {"prob": "prob", "loss": "avg_loss"}),
            }
        aggregate = aggregates.get(f"{split}/prob")
        if aggregate is not None or "prob" in table:
            entry: dict[str, Any] = {"agg_value": _value(aggregate)}
            if "prob" in table:
                entry["value_by_index"] = _by_index(table, {"prob": "prob"})
            entries[split_metric_name(split, "Q_A_Prob", normalised=True)] = entry
        return entries
    aggregate = aggregates.get(f"{split}/prob")
    if aggregate is not None or "prob" in table:
        entry = {"agg_value": _value(aggregate)}
        if "prob" in table:
            entry["value_by_index"] = _by_index(table, {"prob": "prob", "loss": "avg_loss"})
        entries[raw] = entry
    return entries


def _option_entries(
    split: str, table: Mapping[str, Sequence[float]], records: Mapping[str, Sequence[Any]]
) -> dict[str, Any]:
    """The truth ratio's pre-computes: ``{p}_Q_A_PARA_Prob`` (the paraphrased answer) and ``{p}_Q_A_PERT_Prob``
    (the K perturbed answers, lists per index; its aggregate the mean of the per-sample means)."""
    entries: dict[str, Any] = {}
    if "para_loss" in table:
        probs = [_prob(v) for v in table["para_loss"]]
        para = {"index": table["index"], "prob": probs, "loss": table["para_loss"]}
        entries[split_metric_name(split, "Q_A_PARA_Prob")] = {
            "agg_value": _value(_mean(probs)),
            "value_by_index": _by_index(para, {"prob": "prob", "loss": "avg_loss"}),
        }
    if "perturbed_loss" in records:
        losses = [[math.nan if v is None else float(v) for v in row] for row in records["perturbed_loss"]]
        probs = [[_prob(v) for v in row] for row in losses]
        pert = {"index": records["index"], "prob": probs, "loss": losses}
        entries[split_metric_name(split, "Q_A_PERT_Prob")] = {
            "agg_value": _value(_mean([_mean(row) for row in probs])),
            "value_by_index": _by_index(pert, {"prob": "prob", "loss": "avg_loss"}),
        }
    return entries


def to_open_unlearning(
    result: EvalResult,
    normalised_splits: Sequence[str] = ("real_authors", "world_facts"),
    mia_splits: tuple[str, str] = ("forget", "holdout"),
) -> tuple[dict[str, Any], dict[str, float]]:
    """``(TOFU_EVAL, TOFU_SUMMARY)`` payloads of one QA result, in open-unlearning's schema and names."""
    logs: dict[str, Any] = {}
    aggregates, per_sample, records = result.aggregates, result.per_sample, result.records
    for split in PREFIXES:
        table, texts = per_sample.get(split, {}), records.get(split, {})
        logs.update(_probability_entries(split, table, aggregates, split in normalised_splits))
        logs.update(_option_entries(split, table, texts))
        if f"{split}/rouge" in aggregates or "rouge" in table:
            entry: dict[str, Any] = {"agg_value": _value(aggregates.get(f"{split}/rouge"))}
            if "rouge" in table:
                entry["value_by_index"] = _by_index(table, ROUGE_COLUMNS, texts, _ROUGE_TEXTS)
            logs[split_metric_name(split, "Q_A_ROUGE")] = entry
        if f"{split}/truth_ratio" in aggregates or "truth_ratio" in table:
            entry = {"agg_value": _value(aggregates.get(f"{split}/truth_ratio"))}
            if "truth_ratio" in table:
                entry["value_by_index"] = _by_index(table, {"truth_ratio": "score"})
            logs[split_metric_name(split, "Truth_Ratio")] = entry
        if split != "forget":
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
                    entry[role] = {
                        "agg_value": _value(_mean(table[column])),
                        "value_by_index": _by_index(table, {column: "score"}),
                    }
            logs[name] = entry
    for name in _CROSS_SPLIT:
        if name in aggregates:
            logs[name] = {"agg_value": _value(aggregates[name])}
    logs = dict(sorted(logs.items()))  # open-unlearning's save_logs sorts by name
    summary = {
        name: logs[name]["agg_value"]
        for name in SUMMARY_METRICS
        if name in logs and logs[name]["agg_value"] is not None  # its summarize drops null aggregates
    }
    return logs, summary


def write_open_unlearning(result: EvalResult, folder: str | os.PathLike, **options: Any) -> tuple[Path, Path]:
    """Write ``TOFU_EVAL.json`` and ``TOFU_SUMMARY.json`` into ``folder`` (atomically); return their paths."""
    logs, summary = to_open_unlearning(result, **options)
    folder = Path(folder)
    eval_path = atomic_write(folder / TOFU_EVAL_JSON, json.dumps(logs, indent=4, allow_nan=False).encode())
    summary_path = atomic_write(folder / TOFU_SUMMARY_JSON, json.dumps(summary, indent=4, allow_nan=False).encode())
    return eval_path, summary_path


def is_open_unlearning(payload: Any) -> bool:
    """Whether a loaded JSON is an open-unlearning eval log (metric -> ``{"agg_value": ...}``), not an EvalResult."""
    return (
        isinstance(payload, Mapping)
        and "aggregates" not in payload
        and any(isinstance(v, Mapping) and "agg_value" in v for v in payload.values())
    )


def _scores(entry: Any, key: str) -> tuple[list[float], list[Any]] | None:
    """``(index, values)`` of a ``value_by_index`` block, sorted by index; entries without the key are NaN (null
    inside a list stays NaN too; strings stay strings)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("value_by_index"), Mapping):
        return None
    rows = sorted(entry["value_by_index"].items(), key=lambda kv: int(kv[0]))
    if not any(isinstance(v, Mapping) and key in v for _, v in rows):
        return None
    values = [v.get(key) if isinstance(v, Mapping) else None for _, v in rows]
    return [float(int(i)) for i, _ in rows], [v if isinstance(v, str) else _nan(v) for v in values]


def _aggregate(payload: Mapping[str, Any], name: str) -> float:
    value = payload[name].get("agg_value") if isinstance(payload[name], Mapping) else None
    return math.nan if value is None else float(value)


def from_open_unlearning(
    payload: Mapping[str, Any],
    source: str = "the file",
    mia_splits: tuple[str, str] = ("forget", "holdout"),
) -> EvalResult:
    """An :class:`EvalResult` from an open-unlearning ``TOFU_EVAL.json`` payload (its retain logs, for example)."""
    aggregates: dict[str, float] = {}
    per_sample: dict[str, dict[str, list[float]]] = {}
    records: dict[str, dict[str, list[Any]]] = {}

    def put(split: str, column: str, scores: tuple[list[float], list[Any]] | None, record: bool = False) -> None:
        if scores is None:
            return
        table = (records if record else per_sample).setdefault(split, {})
        index, values = scores
        if "index" in table and table["index"] != index:
            raise InputError(f"{source}: the {split} metrics of the open-unlearning log disagree on sample indices")
        table["index"], table[column] = index, values

    for split in PREFIXES:
        raw, normalised = split_metric_name(split, "Q_A_Prob"), split_metric_name(split, "Q_A_Prob", True)
        if raw in payload:  # the true answer's probability and loss; prob only when no normalised entry exists
            put(split, "loss", _scores(payload[raw], "avg_loss"))
            if normalised not in payload:
                aggregates[f"{split}/prob"] = _aggregate(payload, raw)
                put(split, "prob", _scores(payload[raw], "prob"))
        if normalised in payload:
            aggregates[f"{split}/prob"] = _aggregate(payload, normalised)
            put(split, "prob", _scores(payload[normalised], "prob"))
        para = split_metric_name(split, "Q_A_PARA_Prob")
        if para in payload:
            put(split, "para_loss", _scores(payload[para], "avg_loss"))
        pert = split_metric_name(split, "Q_A_PERT_Prob")
        if pert in payload:
            put(split, "perturbed_loss", _scores(payload[pert], "avg_loss"), record=True)
        rouge = split_metric_name(split, "Q_A_ROUGE")
        if rouge in payload:
            aggregates[f"{split}/rouge"] = _aggregate(payload, rouge)
            for column, key in ROUGE_COLUMNS.items():
                put(split, column, _scores(payload[rouge], key))
            for name in _ROUGE_TEXTS:
                put(split, name, _scores(payload[rouge], name), record=True)
        ratio = split_metric_name(split, "Truth_Ratio")
        if ratio in payload:
            aggregates[f"{split}/truth_ratio"] = _aggregate(payload, ratio)
            put(split, "truth_ratio", _scores(payload[ratio], "score"))
    for name in _FORGET_METRICS:
        if name in payload:
            aggregates[f"forget/{name}"] = _aggregate(payload, name)
            put("forget", name, _scores(payload[name], "score"))
    for name, (auc_name, column) in _MIA.items():
        if name in payload:
            aggregates[auc_name] = _aggregate(payload, name)
            for role, split in zip(("forget", "holdout"), mia_splits, strict=True):
                if column not in per_sample.get(split, {}):  # LOSS scores are the Q_A_Prob losses read above
                    put(split, column, _scores(payload[name].get(role), "score"))
    for name in _CROSS_SPLIT:
        if name in payload:
            aggregates[name] = _aggregate(payload, name)
    if "forget_truth_ratio" not in payload and "mia_min_k" not in payload:
        raise InputError(
            f"{source} is an open-unlearning log without 'forget_truth_ratio' or 'mia_min_k'; an oracle needs the "
            "retain model's TOFU_EVAL.json with them (open-unlearning's TOFU eval writes both)"
        )
    return EvalResult(aggregates=aggregates, per_sample=per_sample, records=records)
