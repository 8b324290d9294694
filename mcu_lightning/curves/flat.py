"""Many tensors as one flat vector: the layout a :class:`~mcu_lightning.curves.curve.Curve` keeps its bends in.

One flat tensor per bend makes a step a few large ``mul``/``add`` kernels and a ``split``, not a Python loop over
every tensor. These helpers pick the flat vector's dtype, split it back into shaped tensors, and keep the tensors
that are not flattened (off the curve) as named, device-following buffers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


class TensorStore(nn.Module):
    """Named tensors kept as non-persistent buffers, so they follow ``.to(device)`` but stay out of checkpoints."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.names = list(tensors)
        for i, tensor in enumerate(tensors.values()):
            self.register_buffer(f"t{i}", tensor, persistent=False)

    def values(self) -> list[Tensor]:
        return list(self._buffers.values())

    def items(self) -> list[tuple[str, Tensor]]:
        return list(zip(self.names, self._buffers.values(), strict=True))


def common_dtype(dtypes: Sequence[torch.dtype], floor: torch.dtype | None = None) -> torch.dtype:
    """The one dtype shared by all ``dtypes``, or their promotion (at least ``floor``) when they differ."""
    unique = set(dtypes)
    if len(unique) == 1 and floor is None:
        return unique.pop()
    out = floor or torch.float32
    for dtype in unique:
        out = torch.promote_types(out, dtype)
    return out


def pieces(flat: Tensor, sizes: list[int], shapes: list, dtypes: list) -> list[Tensor]:
    """``flat`` split into tensors of ``shapes`` (views when one dtype is shared, else converted copies)."""
    if not sizes:
        return []
    if len(set(dtypes)) == 1:
        flat = flat.to(dtypes[0])
        return [piece.view(shape) for piece, shape in zip(flat.split(sizes), shapes, strict=True)]
    return [p.view(s).to(d) for p, s, d in zip(flat.split(sizes), shapes, dtypes, strict=True)]
