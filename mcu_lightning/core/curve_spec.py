"""Rules read off a curve's spec as a study writes it (``curves:`` in the study YAML), stated once for the study that
runs the curve (``study/schema.py``, ``study/stages.py``) and the report that describes it (``report/console.py``,
``report/summary.py``).

- how many bends a curve has and whether it is a **training-free path** (tested only, never fitted);
- whose loss ``objective: endpoint`` trains on: the curve's **first unlearning endpoint**.

The rules take the spec's fields (``path``, ``fixed_bends``, ``shape``, the curve's nodes), so the study's
dataclasses and the report's saved JSON read them alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: Shapes (by class name) of two bends only, the endpoints: no free point to fit (``Linear`` is ``Line``'s former name).
TWO_BEND_SHAPES = ("Line", "Linear", "Slerp")


def shape_bends(path: str | None, shape: Any) -> int:
    """How many bends (endpoints included) a curve of ``path`` (``line``, ``slerp``, ``base`` or ``None``) and
    ``shape`` (a class spec) has: 3 for the ``base`` path, 2 for another path or a two-bend shape, else the
    shape's ``num_bends`` (3 when it gives none)."""
    if path is not None:
        return 3 if path == "base" else 2
    shape = shape if isinstance(shape, dict) else {}
    if str(shape.get("class_path", "")).rsplit(".", 1)[-1] in TWO_BEND_SHAPES:
        return 2
    return int((shape.get("init_args") or {}).get("num_bends", 3))


def is_training_free(path: str | None, fixed_bends: bool, shape: Any) -> bool:
    """A training-free path (tested only): ``path`` set, ``fixed_bends``, or a shape of two bends only."""
    return path is not None or bool(fixed_bends) or shape_bends(path, shape) == 2


def objective_endpoint(nodes: Sequence[str], endpoints: Mapping[str, T]) -> T | None:
    """The endpoint whose loss a curve's ``objective: endpoint`` trains on: the first of the curve's ``nodes``, in
    its order, that is an unlearning endpoint (a key of ``endpoints``; ``base`` and ``oracle`` are none);
    ``None`` when no node is."""
    return next((endpoints[node] for node in nodes if node in endpoints), None)
