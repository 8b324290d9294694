"""QA rows as stored (TOFU's field names): read as dicts, and refused when they cannot be trained on.

A row is (question, answer), plus ``paraphrased_answer`` and ``perturbed_answer`` (a string or a list of them)
in evaluation configs. Bad rows fail with a ``ValueError`` naming the row and the field: a missing or non-string
``question``/``answer``, an empty answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcu_lightning.core.errors import InputError


def rows_of(data: Any) -> list[dict[str, Any]]:
    """The rows of a ``datasets.Dataset`` (or any iterable of mappings) as plain dicts."""
    if hasattr(data, "to_list"):
        return data.to_list()
    return [dict(row) for row in data]


class MissingFieldError(KeyError, InputError):
    """A QA row lacks a field: a ``KeyError`` (a missing key) that is also an ``InputError`` (bad input)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def check_row(row: Any, index: int) -> None:
    """Raise a ``ValueError`` naming row ``index`` and the field when a QA row cannot be trained on."""
    if not isinstance(row, Mapping):
        raise InputError(f"QA row {index} is a {type(row).__name__}, not an object with 'question' and 'answer'")
    for key in ("question", "answer"):
        if key not in row or row[key] is None:  # None: a JSON-lines reader filled in a field the row lacks
            present = sorted(k for k, v in row.items() if v is not None)
            raise MissingFieldError(f"QA rows need '{key}'; row {index} lacks it (its fields: {present})")
        if not isinstance(row[key], str):
            raise InputError(f"QA row {index}: field '{key}' is a {type(row[key]).__name__}, not a string")
    if not row["answer"].strip():
        raise InputError(f"QA row {index}: field 'answer' is empty; drop the row or give it an answer")
    for key in ("paraphrased_answer", "perturbed_answer"):
        if key in row and row[key] is not None:
            values = [row[key]] if isinstance(row[key], str) else row[key]
            if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
                raise InputError(f"QA row {index}: field '{key}' must be a non-empty string or list of them")
