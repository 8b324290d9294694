"""Objects from the study's class specs (``class_path`` + ``init_args``), checked against a base type."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from jsonargparse import ArgumentParser


def build(spec: Any, base_type: type, what: str) -> Any:
    """Instantiate a ``{class_path, init_args}`` spec (nested specs too) checked against ``base_type``."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--obj", type=base_type)
    try:
        cfg = parser.parse_object({"obj": spec})
    except Exception as err:  # jsonargparse says which class path or argument is wrong
        raise ValueError(f"{what}: cannot build {spec!r}: {err}") from err
    return parser.instantiate(cfg).obj


def check_class_path(spec: Any, what: str) -> None:
    """Fail early, with close matches, when a class path does not import."""
    from mcu_lightning.core.registry import resolve_class_path

    if isinstance(spec, dict) and "class_path" in spec:
        resolve_class_path(spec["class_path"], what)
        for value in (spec.get("init_args") or {}).values():
            check_class_path(value, what)


def optimizer_factory(spec: dict[str, Any] | None) -> Callable[..., Any]:
    """``params -> optimizer`` from a class spec (a bare name means ``torch.optim.<name>``; default AdamW 1e-3)."""
    from lightning.pytorch.cli import instantiate_class

    spec = spec or {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}}
    if "." not in spec["class_path"]:
        spec = {**spec, "class_path": f"torch.optim.{spec['class_path']}"}
    return partial(instantiate_class, init=spec)
