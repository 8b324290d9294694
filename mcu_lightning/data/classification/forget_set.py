"""The forget set of a classification train part: a seeded fraction, or a JSON list of train indices."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.storage import read_utf8


def select_forget(
    num_train: int, fraction: float = 0.1, seed: int = 0, index_file: str | Path | None = None
) -> tuple[Tensor, Tensor]:
    """``(forget, retain)`` train indices: ``round(fraction * N)`` (at least 1) drawn from the seed, or a file.

    ``index_file`` is a JSON list of train indices; the retain set is every other train index.
    """
    if index_file is not None:
        path = Path(index_file)
        if not path.is_file():
            raise FileNotFoundError(f"forget index file '{path}' does not exist; give a JSON list of train indices")
        forget = torch.tensor(sorted(set(json.loads(read_utf8(path, "forget index file")))), dtype=torch.long)
        if forget.numel() == 0:
            raise InputError(f"forget index file '{path}' is empty; an empty forget set has nothing to unlearn")
        if forget.min() < 0 or forget.max() >= num_train:
            raise InputError(f"forget index file '{path}' has indices outside [0, {num_train}) of the train part")
    else:
        if not 0 < fraction < 1:
            raise InputError(f"forget_fraction={fraction} must lie in (0, 1), e.g. 0.1 for 10 % of the train part")
        count = max(1, round(fraction * num_train))
        if count >= num_train:
            raise InputError(f"forget_fraction={fraction} leaves no retain samples out of {num_train}")
        perm = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))
        forget = perm[:count].sort().values
    mask = torch.ones(num_train, dtype=torch.bool)
    mask[forget] = False
    retain = mask.nonzero().flatten()
    if retain.numel() == 0:
        raise InputError("the forget set covers the whole train part; nothing is left to retain")
    return forget, retain
