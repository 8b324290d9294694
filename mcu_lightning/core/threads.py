"""How many intra-op threads torch uses on the CPU, chosen from the model's size when the ``mcu`` command runs.

Every CPU op of torch is an OpenMP parallel region whose barrier waits for all its threads. For a model of a few
hundred thousand parameters an op is microseconds of work, so a second thread gains nothing on an idle machine and,
on a busy one, makes each op wait for a core another process holds: the digits MLP's forward had a 90th percentile
of 40-630 ms with torch's default 2 threads against 0.3 ms with one, and the quickstart ran 3x slower
(docs/performance.md, "Intra-op threads dominate small-model CPU runs"). Below :data:`SMALL_MODEL` parameters the
``mcu`` commands therefore run on one intra-op thread; larger models keep torch's default (one thread a core).
``MCU_NUM_THREADS`` overrides both. The choice is printed once, as the console's first line.

The library used from Python changes nothing: :func:`enable` is called by the ``mcu`` command only.
"""

from __future__ import annotations

import os
import sys

#: Parameters below which a model runs on one intra-op thread (ops too small to gain from a parallel region).
SMALL_MODEL = 10_000_000
ENV = "MCU_NUM_THREADS"

_state: dict[str, int | bool] = {"enabled": False, "said": False}


def enable() -> None:
    """Let :func:`apply` choose the thread count (the ``mcu`` command calls this; library use does not)."""
    _state["enabled"] = True


def choose(num_parameters: int, cpu_default: int) -> tuple[int, str]:
    """``(threads, why)`` for a model of ``num_parameters`` on a CPU whose torch default is ``cpu_default``."""
    given = os.environ.get(ENV)
    if given:
        return int(given), f"{ENV}={given}"
    size = f"a model of {_count(num_parameters)} parameters"
    if num_parameters < SMALL_MODEL:
        return 1, f"{size}, too small to gain from more; {ENV} sets it"
    return cpu_default, f"{size}; torch's default; {ENV} sets it"


def apply(num_parameters: int) -> int | None:
    """Set torch's intra-op threads for a CPU run of a model of ``num_parameters`` and say so once (stderr).

    Does nothing unless :func:`enable` was called. Returns the thread count set, or ``None``.
    """
    if not _state["enabled"]:
        return None
    import torch

    _state.setdefault("default", torch.get_num_threads())  # torch's own choice, before this first changes it
    threads, why = choose(num_parameters, int(_state["default"]))
    torch.set_num_threads(threads)
    if not _state["said"]:
        _state["said"] = True
        print(f"mcu: {threads} intra-op CPU thread{'s' if threads > 1 else ''} ({why})", file=sys.stderr, flush=True)
    return threads


def _count(n: int) -> str:
    """``107 k``, ``1.24 B``: a parameter count to three figures."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return str(n)
