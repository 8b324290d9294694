"""How a batch meets a model: which keys are model inputs, and where the logits are.

Every batch in this package is a flat mapping. Classification batches carry ``inputs`` (a tensor the
model takes positionally, so a plain ``forward(x)`` works) and ``labels``; causal-LM batches carry
``input_ids``, ``attention_mask`` and ``labels`` (prompt and padding labelled -100). Any other key
(``index``, ``labels``, evaluation extras) is metadata that never reaches the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

#: Keyword inputs a Hugging Face model receives from a batch.
LM_INPUT_KEYS: tuple[str, ...] = ("input_ids", "attention_mask")

#: The policy seam (docs/internals.md, "Batches"): the model applied to a sub-batch's inputs, returning logits.
Policy = Callable[[Mapping[str, Any]], Tensor]


def model_inputs(batch: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Split a batch into the positional and keyword arguments of the model's ``forward``."""
    if "inputs" in batch:
        return (batch["inputs"],), {}
    kwargs = {key: batch[key] for key in LM_INPUT_KEYS if key in batch}
    if not kwargs:
        raise KeyError(f"batch has neither 'inputs' nor any of {LM_INPUT_KEYS}; keys are {sorted(batch)}")
    return (), kwargs


def logits_of(output: Any) -> Tensor:
    """The logits of a model output: a tensor, a ``ModelOutput`` with ``.logits``, or a tuple's first item."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def call_model(model: nn.Module, batch: Mapping[str, Any]) -> Tensor:
    """Run ``model`` on the model inputs of ``batch`` and return its logits."""
    args, kwargs = model_inputs(batch)
    return logits_of(model(*args, **kwargs))


def as_policy(model: nn.Module) -> Policy:
    """The policy of a plain model: ``policy(batch) == call_model(model, batch)``."""

    def policy(batch: Mapping[str, Any]) -> Tensor:
        return call_model(model, batch)

    return policy


def frozen_policy(model: nn.Module) -> Policy:
    """The policy of a fixed target (a loss's reference model): ``call_model`` under ``torch.no_grad``."""

    def policy(batch: Mapping[str, Any]) -> Tensor:
        with torch.no_grad():
            return call_model(model, batch)

    return policy


@contextlib.contextmanager
def kv_cache_off(*models: nn.Module) -> Iterator[None]:
    """Forwards without a KV cache inside the block: ``config.use_cache = False`` on Hugging Face models.

    ``use_cache`` defaults to True, so every training or scoring forward of a Hugging Face decoder builds a cache of
    all layers' keys and values that nothing reads: memory held until the step's graph is freed and a concatenation
    per layer. ``generate`` is unaffected (it takes ``use_cache`` from the generation config). Models without a
    ``config.use_cache`` are left alone; the previous values come back on exit.
    """
    changed = []
    for model in models:
        config = getattr(model, "config", None)
        if getattr(config, "use_cache", None) is True:
            config.use_cache = False
            changed.append(config)
    try:
        yield
    finally:
        for config in changed:
            config.use_cache = True
