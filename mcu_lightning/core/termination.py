"""A process-wide "stop requested" flag: set by the study's SIGTERM handler, read by the loops that must stop.

Lightning's own SIGTERM flag (``trainer.received_sigterm``) lives only while a Trainer call holds the signal and is
cleared at the start of each call; this one lasts until the study ends, so a signal that comes while a Trainer is
being set up or torn down still stops the next batch (``callbacks.termination.StopOnTermination``) and the next
point of a curve's test.
"""

from __future__ import annotations

_requested = False


def request_stop() -> None:
    global _requested
    _requested = True


def clear_stop() -> None:
    global _requested
    _requested = False


def stop_requested() -> bool:
    return _requested
