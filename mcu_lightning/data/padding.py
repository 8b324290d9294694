"""Padding integer lists into batch tensors: shared by the QA and classification collators."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mcu_lightning.core.errors import InputError


def _positions(lengths: Sequence[int], length: int, left: bool) -> Tensor:
    """``[N, length]`` bool: where each row's ``lengths[i]`` values go (the first ones, or the last with ``left``)."""
    sizes = torch.tensor(lengths, dtype=torch.long).unsqueeze(1)
    columns = torch.arange(length)
    return columns >= length - sizes if left else columns < sizes


def pad_sequences(seqs: Sequence[Sequence[int]], value: int, left: bool = False, length: int | None = None) -> Tensor:
    """Stack integer lists into ``[N, L]`` padded with ``value`` on the right (or the left).

    One tensor conversion for the whole batch and one masked write (row-major order keeps each row's values in
    place), not a conversion per row: collation runs for every batch of every epoch.
    """
    lengths = [len(s) for s in seqs]
    length = max(lengths, default=0) if length is None else length
    if lengths and max(lengths) > length:
        raise InputError(f"a sequence of {max(lengths)} values does not fit length={length}")
    out = torch.full((len(seqs), length), value, dtype=torch.long)
    out[_positions(lengths, length, left)] = torch.tensor([v for s in seqs for v in s], dtype=torch.long)
    return out


def padding_mask(seqs: Sequence[Sequence[int]], length: int, left: bool = False) -> Tensor:
    """The attention mask of :func:`pad_sequences`: 1 on the values, 0 on the padding, ``[N, length]`` long."""
    return _positions([len(s) for s in seqs], length, left).long()
