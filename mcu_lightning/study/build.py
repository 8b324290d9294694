"""Objects from the study's class specs (``class_path`` + ``init_args``), checked against a base type."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from functools import partial
from typing import Any

from jsonargparse import ArgumentParser

from mcu_lightning.study.schema import StudyError


def build(spec: Any, base_type: type, what: str) -> Any:
    """Instantiate a ``{class_path, init_args}`` spec (nested specs too) checked against ``base_type``."""
    parser = _spec_parser(base_type)
    return parser.instantiate(_parse(parser, spec, what)).obj


def check_spec(spec: Any, base_type: type, what: str) -> None:
    """Check a class spec against its class's signature (unknown or mistyped ``init_args``) without building it:
    for what is costly or has side effects to build (a model, a datamodule)."""
    _check(_spec_parser(base_type), spec, what)


@functools.cache
def _spec_parser(base_type: type) -> ArgumentParser:
    """One parser per base type (making one costs more than parsing with it; parsing leaves it unchanged)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--obj", type=base_type)
    return parser


def check_optimizer(spec: dict[str, Any] | None, what: str) -> None:
    """Check an optimizer spec (as :func:`optimizer_factory` reads it) against the optimizer's signature."""
    from torch.optim import Optimizer

    if spec is None:
        return
    if isinstance(spec, dict) and "." not in str(spec.get("class_path", ".")):
        spec = {**spec, "class_path": f"torch.optim.{spec['class_path']}"}
    _check(_optimizer_parser(Optimizer), spec, what)


@functools.cache
def _optimizer_parser(base_type: type) -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base_type, "obj", skip={"params"}, fail_untyped=False)
    return parser


def check_trainer_args(kwargs: dict[str, Any], what: str = "trainer") -> None:
    """Check ``Trainer`` keyword arguments (unknown keys, wrong types) against ``Trainer.__init__``."""
    from lightning.pytorch import Trainer

    _check(_trainer_parser(Trainer), kwargs, what)


@functools.cache
def _trainer_parser(trainer: type) -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(trainer, "obj", fail_untyped=False)
    return parser


#: Specs already checked (parser, spec as JSON): a study names one optimizer or datamodule for many stages.
_CHECKED: set[str] = set()


def _check(parser: ArgumentParser, spec: Any, what: str) -> None:
    key = json.dumps([id(parser), spec], sort_keys=True, default=repr)
    if key not in _CHECKED:
        _parse(parser, spec, what)
        _CHECKED.add(key)


def _parse(parser: ArgumentParser, spec: Any, what: str) -> Any:
    try:
        return parser.parse_object({"obj": spec})
    except Exception as err:  # jsonargparse says which class path or argument is wrong
        raise StudyError(f"{what}: {spec_problem(err)}") from err


def spec_problem(err: BaseException) -> str:
    """jsonargparse's complaint on one line: the class path's problem, without its union-subtype preamble."""
    text = " ".join(str(err).split())
    start = text.find("Problem with given class_path")
    if start >= 0:
        text = text[start:].split(" - Expected a <class 'NoneType'>")[0]
    return text.replace('Group "obj" ', "").replace("Group 'obj' ", "").replace('Parser key "obj.', 'key "')


def check_class_path(spec: Any, what: str) -> None:
    """Fail early, with close matches, when a class path does not import."""
    from mcu_lightning.core.registry import resolve_class_path

    if isinstance(spec, dict) and "class_path" in spec:
        if not isinstance(spec["class_path"], str):
            raise StudyError(
                f"{what}: class_path={spec['class_path']!r}; give a dotted name (e.g. mcu_lightning.losses.NPO)"
            )
        resolve_class_path(spec["class_path"], what)
        if not isinstance(spec.get("init_args") or {}, dict):
            raise StudyError(f"{what}: init_args={spec['init_args']!r}; give the arguments as keys and values")
        for value in (spec.get("init_args") or {}).values():
            check_class_path(value, what)


def optimizer_factory(spec: dict[str, Any] | None) -> Callable[..., Any]:
    """``params -> optimizer`` from a class spec (a bare name means ``torch.optim.<name>``; default AdamW 1e-3)."""
    from lightning.pytorch.cli import instantiate_class

    spec = spec or {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}}
    if "." not in spec["class_path"]:
        spec = {**spec, "class_path": f"torch.optim.{spec['class_path']}"}
    return partial(instantiate_class, init=spec)
