"""Independent random streams: every random draw of a run comes from a hash of (seed, stream name, index).

Seeding a generator with ``seed + epoch`` makes seed 1 at epoch e draw exactly seed 0's order at epoch e + 1,
so two "independent" runs share most of their data orders. Hashing the whole key instead,

    stream_seed(seed, stream, *index) = BLAKE2b-64("seed/stream/i/j/...") >> 1

(RFC 7693; the shift keeps the value a non-negative 63-bit integer, which ``torch.Generator.manual_seed`` takes),
gives every (seed, stream, epoch or step) its own generator: different seeds share no permutation, different
streams of one run (data order, retain partners, curriculum, t, probes, LoRA init) are unrelated, and since a draw
depends on its key alone a resumed run draws the same sequence as an uninterrupted one.
"""

from __future__ import annotations

import hashlib

import torch


def stream_seed(seed: int, stream: str, *index: int) -> int:
    """The 63-bit seed of random stream ``stream`` of a run seeded ``seed`` at ``index`` (epoch, step, ...)."""
    key = "/".join([str(int(seed)), stream, *(str(int(i)) for i in index)])
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1


def stream_generator(seed: int, stream: str, *index: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`stream_seed` ``(seed, stream, *index)``."""
    return torch.Generator().manual_seed(stream_seed(seed, stream, *index))
