"""The oracle's evaluation file: the retain-only model's ``test`` writes its :class:`EvalResult` JSON (aggregates plus
per-sample values); every other run reads it back for the metrics that compare against the oracle: TOFU's forget
quality (the oracle's forget-set truth ratios), MUSE's PrivLeak (the oracle's MIA AUCs), accuracy gaps. An
open-unlearning ``TOFU_EVAL.json`` (the "retain logs" it publishes for its retain models) is read as well.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from mcu_lightning.core.errors import InputError
from mcu_lightning.metrics.open_unlearning import from_open_unlearning, is_open_unlearning
from mcu_lightning.metrics.suite import EvalResult

OracleSource = str | os.PathLike | EvalResult
#: ``oracle="self"``: the model evaluated is the oracle; a suite compares it with itself (forget quality 1, privleak 0).
ORACLE_SELF = "self"


def load_oracle(source: OracleSource | None) -> EvalResult | None:
    """The oracle's result from a JSON path (or an ``EvalResult`` given directly); ``None`` and ``"self"``: ``None``.

    The file is this project's ``test_metrics.json`` or open-unlearning's ``TOFU_EVAL.json`` (told apart by their
    keys: ``aggregates`` or metric names with ``agg_value``).
    """
    if source is None or isinstance(source, EvalResult):
        return source
    if source == ORACLE_SELF:
        return None
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"oracle evaluation file '{path}' not found; run `mcu test` on the oracle (retain-only) model first: "
            "its test writes this JSON (EvalResult.to_json)"
        )
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"oracle evaluation file '{path}' is not valid JSON ({err}); rerun the oracle's test") from err
    if is_open_unlearning(payload):
        return from_open_unlearning(payload, source=f"oracle file '{path}'")
    return EvalResult.from_json(path)


def write_oracle(result: EvalResult, path: str | os.PathLike) -> None:
    """Save an oracle's evaluation for later runs (the same atomic JSON as ``EvalResult.to_json``)."""
    result.to_json(path)


def oracle_values(oracle: EvalResult | None, split: str, stat: str) -> np.ndarray | None:
    """The oracle's per-sample ``stat`` on ``split`` (ordered by index), or ``None`` when it has none."""
    if oracle is None:
        return None
    values = oracle.per_sample.get(split, {}).get(stat)
    return None if values is None else np.asarray(values, dtype=np.float64)


def oracle_aggregate(oracle: EvalResult | None, name: str) -> float | None:
    """The oracle's aggregate ``name``, or ``None`` when it has no finite value for it."""
    if oracle is None:
        return None
    value = oracle.aggregates.get(name)
    return None if value is None or not math.isfinite(value) else float(value)
