"""The rules read off a curve's spec, which the study and the report share (``mcu_lightning.core.curve_spec``)."""

from __future__ import annotations

from mcu_lightning.core.curve_spec import is_training_free, objective_endpoint, shape_bends

BEZIER = {"class_path": "mcu_lightning.curves.Bezier", "init_args": {"num_bends": 4}}


def test_bends_and_training_free_paths() -> None:
    assert [shape_bends(p, BEZIER) for p in ("base", "line", "slerp", None)] == [3, 2, 2, 4]
    assert shape_bends(None, {"class_path": "mcu_lightning.curves.Linear"}) == 2
    assert shape_bends(None, "not a spec") == 3
    assert is_training_free(None, False, {"class_path": "mcu_lightning.curves.Linear"})
    assert is_training_free("line", False, BEZIER) and is_training_free(None, True, BEZIER)
    assert not is_training_free(None, False, BEZIER)


def test_the_objective_endpoint_is_the_curves_first_unlearning_endpoint() -> None:
    endpoints = {"npo": 1, "graddiff": 2}
    assert objective_endpoint(["base", "graddiff", "npo"], endpoints) == 2
    assert objective_endpoint(["base", "oracle"], endpoints) is None
