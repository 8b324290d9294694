"""The endpoints of a curve or a merge: loaded from a path or taken as a state dict, tie partners filled, checked.

Shared by :class:`~mcu_lightning.curves.curve.Curve` (and so SLERP and the factor-space LoRA curve), the LoRA-delta
curve (:mod:`mcu_lightning.curves.lora`) and the task-vector merges (:mod:`mcu_lightning.curves.merge`). Every
check names the endpoint and the tensor, and says what would fix it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.curves.reparametrize import tie_groups
from mcu_lightning.models.io import load_state_dict

#: An endpoint: a model path (see :func:`mcu_lightning.models.io.load_state_dict`) or a state dict.
Source = str | os.PathLike | Mapping[str, Tensor]


def endpoint_label(source: Source, index: int) -> str:
    """How errors name endpoint ``index``: its path, quoted, or ``#index`` for a state dict."""
    return f"#{index}" if isinstance(source, Mapping) else f"'{os.fspath(source)}'"


def load_endpoint(source: Source, what: str = "an endpoint") -> dict[str, Tensor]:
    """The state dict of ``source`` (a copy of the mapping, or loaded from the path)."""
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, (str, Path, os.PathLike)):
        return load_state_dict(source)
    raise TypeError(f"{what} is a path or a state dict, got {type(source).__name__}")


def parameter_ties(template: nn.Module) -> dict[str, list[str]]:
    """For each parameter name ``named_parameters()`` lists, every name that shares its tensor (itself first)."""
    return {names[0]: names for names in tie_groups(template, buffers=False)}


def retie(state: dict[str, Tensor], ties: Mapping[str, list[str]]) -> dict[str, Tensor]:
    """Fill a tied name a format dropped (``save_pretrained`` drops ``lm_head.weight``) from its tie partner."""
    for canonical, names in ties.items():
        if canonical not in state:
            present = [name for name in names if name in state]
            if present:
                state[canonical] = state[present[0]]
    return state


def check_two_endpoints(endpoints: Sequence[object]) -> None:
    """A curve has exactly two endpoints."""
    if len(endpoints) != 2:
        raise InputError(f"a curve needs exactly two endpoints, got {len(endpoints)}")


def check_distinct(states: Sequence[Mapping[str, Tensor]], names: Sequence[str], which: str) -> None:
    """The two endpoints differ in at least one of ``names`` (``which`` names them in the error)."""
    if all(torch.equal(states[0][name], states[1][name]) for name in names):
        raise InputError(f"a curve needs two different endpoints; {which} are identical")


def check_finite(state: Mapping[str, Tensor], names: Sequence[str], label: str) -> None:
    """No NaN or inf in the floating tensors ``names`` of endpoint ``label``."""
    for name in names:
        tensor = state[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(f"endpoint {label} has non-finite values (NaN or inf) in '{name}'")


def check_names(states: list[dict[str, Tensor]], labels: list[str], named: Mapping[str, Tensor], kind: str) -> None:
    """Every template tensor in ``named`` is in both endpoints, with the template's shape (``kind``: parameter or
    buffer, for the error)."""
    for name, reference in named.items():
        present = [name in state for state in states]
        if not all(present):
            if not any(present):
                raise InputError(
                    f"endpoints {labels[0]} and {labels[1]} both lack {kind} '{name}' of the template; "
                    "are they models of the template's architecture?"
                )
            have, lack = (0, 1) if present[0] else (1, 0)
            raise InputError(f"endpoint {labels[lack]} lacks {kind} '{name}' that endpoint {labels[have]} has")
        shapes = [tuple(state[name].shape) for state in states]
        if shapes[0] != shapes[1]:
            raise InputError(
                f"{kind} '{name}' has shape {shapes[0]} in endpoint {labels[0]} but {shapes[1]} in {labels[1]}"
            )
        if shapes[0] != tuple(reference.shape):
            raise InputError(
                f"{kind} '{name}' has shape {shapes[0]} in the endpoints but {tuple(reference.shape)} in the template"
            )


def check_off_curve(states: list[dict[str, Tensor]], labels: list[str], off_curve: list[str], selection: str) -> None:
    """Parameters off the curve (not selected by ``selection``) agree between the endpoints."""
    for name in off_curve:
        if not torch.equal(states[0][name], states[1][name]):
            raise InputError(
                f"parameter '{name}' is off the curve ({selection}) but differs between endpoints "
                f"{labels[0]} and {labels[1]}; parameters off the curve must agree (widen include)"
            )


def check_init(state: Mapping[str, Tensor], names: Sequence[str], named: Mapping[str, Tensor], label: str) -> None:
    """A model the control points start at (``init``) has every tensor ``names`` in the endpoints' shapes, finite."""
    for name in names:
        if name not in state:
            raise InputError(f"{label} lacks parameter '{name}' that the endpoints have")
        if tuple(state[name].shape) != tuple(named[name].shape):
            raise InputError(
                f"parameter '{name}' has shape {tuple(state[name].shape)} in {label} "
                f"but {tuple(named[name].shape)} in the endpoints"
            )
    check_finite(state, names, label)
