"""A training loader whose place in the epoch survives a checkpoint: exact mid-epoch resume.

Lightning 2.6 restores a training loader's position only when the loader itself is ``_Stateful``
(``state_dict``/``load_state_dict``; a plain ``DataLoader`` restarts the epoch from its first batch and warns).
``ResumableDataLoader`` records how many batches of the current epoch it has handed out and, after
``load_state_dict``, skips that many at the next ``iter``; since every sampler of :mod:`mcu_lightning.data.samplers`
draws from (seed, stream, epoch) (the trainer restores the epoch), the resumed run sees exactly the remaining
batches of the uninterrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position in the epoch survives a checkpoint (Lightning's ``_Stateful`` protocol).

    ``state_dict()`` is ``{"batches_yielded": k}``: the batches of the current pass handed out so far (0 once
    a pass is complete). Lightning 2.6 saves it with every checkpoint and, when it resumes mid-epoch, calls
    ``load_state_dict`` before iterating; the next pass then drops its first k batches. Lightning's fetcher
    does not prefetch from sized loaders, so at a checkpoint written in ``on_train_batch_end`` k equals the
    number of batches already trained on. Skipped batches are still drawn (the sampler must advance) and
    collated, which costs one pass over already tokenized items at most.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._yielded = 0
        self._skip = 0

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        self._yielded = 0
        iterator = super().__iter__()
        return self._counting(iterator, skip)

    def _counting(self, iterator: Iterator[Any], skip: int) -> Iterator[Any]:
        for index, batch in enumerate(iterator):
            if index < skip:
                continue
            self._yielded = index + 1
            yield batch
        self._yielded = 0  # a finished pass resumes at the start of the next one

    def state_dict(self) -> dict[str, int]:
        """``{"batches_yielded": k}``, with k = 0 once the pass has handed out its last batch.

        A checkpoint written on an epoch's last batch is a finished pass: Lightning resumes it at the start of
        the next epoch, which must then run whole (a k equal to the epoch's length would skip all of it).
        """
        return {"batches_yielded": 0 if self._yielded >= self._batches_per_pass() else self._yielded}

    def _batches_per_pass(self) -> int | float:
        try:
            return len(self)
        except TypeError:  # an iterable dataset of unknown length: no pass is known to be finished
            return math.inf

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._skip = int(state_dict.get("batches_yielded", 0))
