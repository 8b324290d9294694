"""Task-vector merges of the endpoints relative to the base model: single points, tested like an endpoint.

With ``tau_i = theta_i - theta_base`` the task vector of endpoint ``i`` (per floating tensor):

* task arithmetic (Ilharco et al., 2023, "Editing Models with Task Arithmetic", ICLR):
  ``theta = theta_base + scale * sum_i tau_i``;
* TIES (Yadav et al., 2023, "TIES-Merging: Resolving Interference When Merging Models", NeurIPS): trim each
  ``tau_i`` to its ``k = floor(density * numel)`` entries of largest magnitude (per tensor, at least one), elect a
  sign per entry ``gamma = sign(sum_i trim(tau_i))`` (``+1`` where the sum is 0), take the disjoint mean over the
  entries that agree with it, ``tau_m = sum_{i in A} trim(tau_i) / |A|`` with ``A = {i: sign(trim(tau_i)) = gamma}``
  (0 where ``A`` is empty), and ``theta = theta_base + scale * tau_m``.

Both match mergekit's ``task_arithmetic`` and ``ties`` methods with unit weights (arcee-ai/mergekit,
``merge_methods/generalized_task_arithmetic.py``, ``sparsify.py``; there ``scale`` is TIES's ``lambda``, and a
density that keeps no entry of a tensor is an error instead of one entry). Arithmetic runs in float32 (float64
tensors stay float64) and the result takes the base's dtype; integer tensors (step counters) are the base's.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.curves.endpoints import Source, load_endpoint, parameter_ties
from mcu_lightning.models.io import load_model


def _state(source: Source) -> dict[str, Tensor]:
    return load_endpoint(source, what="a model to merge")


def _label(source: Source, index: int | None) -> str:
    if isinstance(source, Mapping):
        return "the base" if index is None else f"endpoint #{index}"
    return f"{'the base' if index is None else f'endpoint #{index}'} '{os.fspath(source)}'"


def task_vectors(endpoints: Sequence[Source], base: Source) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:
    """The base's state dict and, per endpoint, ``tau_i = theta_i - theta_base`` over the base's floating tensors
    (float32 or wider). Every endpoint must have exactly the base's tensor names and shapes; else a ValueError
    names the first difference in one line."""
    if not endpoints:
        raise InputError("a task-vector merge needs at least one endpoint")
    base_state = _state(base)
    names = set(base_state)
    floating = [name for name, tensor in base_state.items() if tensor.is_floating_point()]
    vectors = []
    for index, source in enumerate(endpoints):
        state, label = _state(source), _label(source, index)
        missing = [name for name in base_state if name not in state]
        if missing:
            raise InputError(f"merge: {label} lacks '{missing[0]}' that the base has; are they the same architecture?")
        extra = [name for name in state if name not in names]
        if extra:
            raise InputError(f"merge: {label} has '{extra[0]}' that the base lacks; are they the same architecture?")
        vector = {}
        for name in floating:
            if state[name].shape != base_state[name].shape:
                raise InputError(
                    f"merge: '{name}' has shape {tuple(state[name].shape)} in {label} "
                    f"but {tuple(base_state[name].shape)} in the base"
                )
            dtype = torch.promote_types(base_state[name].dtype, torch.float32)
            vector[name] = state[name].to(dtype) - base_state[name].to(dtype)
        vectors.append(vector)
    return base_state, vectors


def _apply(base: Mapping[str, Tensor], delta: Mapping[str, Tensor], scale: float) -> dict[str, Tensor]:
    """``base + scale * delta`` on the floating tensors, in the base's dtypes; the other tensors as in the base."""
    out = {}
    for name, tensor in base.items():
        if name in delta:
            out[name] = torch.add(tensor.to(delta[name].dtype), delta[name], alpha=scale).to(tensor.dtype)
        else:
            out[name] = tensor.clone()
    return out


def task_arithmetic(endpoints: Sequence[Source], base: Source, scale: float = 1.0) -> dict[str, Tensor]:
    """``theta = theta_base + scale * sum_i (theta_i - theta_base)`` (Ilharco et al., 2023), a state dict."""
    base_state, vectors = task_vectors(endpoints, base)
    summed = {name: torch.stack([vector[name] for vector in vectors]).sum(0) for name in vectors[0]}
    return _apply(base_state, summed, scale)


def trim(vector: Tensor, density: float) -> Tensor:
    """``vector`` with all but its ``max(1, floor(density * numel))`` largest-magnitude entries set to 0 (TIES's
    trim; ties broken by ``torch.topk``)."""
    if not 0.0 < density <= 1.0:
        raise InputError(f"density must lie in (0, 1], got {density}")
    if density == 1.0 or vector.numel() == 0:
        return vector
    k = max(1, int(density * vector.numel()))
    flat = vector.reshape(-1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat.abs(), k, sorted=False).indices] = True
    return torch.where(keep, flat, torch.zeros_like(flat)).view_as(vector)


def ties_delta(vectors: Sequence[Tensor], density: float) -> Tensor:
    """TIES's merged task vector of one tensor: trim, elect the sign of the sum, disjoint mean (Yadav et al.)."""
    trimmed = torch.stack([trim(vector, density) for vector in vectors])
    elected = torch.where(trimmed.sum(0) >= 0, 1.0, -1.0).to(trimmed.dtype)
    agree = torch.sign(trimmed) == elected  # a trimmed (zero) entry agrees with no sign
    count = agree.sum(0).clamp(min=1)
    return torch.where(agree, trimmed, torch.zeros_like(trimmed)).sum(0) / count


def ties(endpoints: Sequence[Source], base: Source, density: float = 0.2, scale: float = 1.0) -> dict[str, Tensor]:
    """TIES-merging of the endpoints' task vectors (Yadav et al., 2023), a state dict; see the module docstring.

    ``density`` is the fraction of each task vector's entries kept per tensor (the paper's top-k%, 20 by default),
    ``scale`` the paper's ``lambda``.
    """
    if not 0.0 < density <= 1.0:
        raise InputError(f"density must lie in (0, 1], got {density}")
    base_state, vectors = task_vectors(endpoints, base)
    merged = {name: ties_delta([vector[name] for vector in vectors], density) for name in vectors[0]}
    return _apply(base_state, merged, scale)


def merged_model(template: nn.Module | str | os.PathLike, state: Mapping[str, Tensor]) -> nn.Module:
    """A model of ``template``'s architecture (a module, copied, or a model path, loaded) holding ``state``, in
    eval mode: it goes through the same test path as an endpoint (``save_model`` writes it as a folder).

    Every persistent tensor of the template must be in ``state`` except tie partners that a format drops
    (``lm_head.weight`` next to the embedding); a ValueError names the first one missing or unexpected.
    """
    model = copy.deepcopy(template) if isinstance(template, nn.Module) else load_model(template)
    tied = {name for names in parameter_ties(model).values() if any(n in state for n in names) for name in names}
    missing, unexpected = model.load_state_dict(dict(state), strict=False)
    missing = [name for name in missing if name not in tied]
    if missing:
        raise InputError(f"merged_model: the merged state lacks '{missing[0]}' of the template")
    if unexpected:
        raise InputError(f"merged_model: the merged state has '{unexpected[0]}' that the template lacks")
    return model.eval()
