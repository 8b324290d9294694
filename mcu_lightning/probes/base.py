"""The probe seam: evaluation beyond the metric suite, at any model (theta(t), an endpoint, the base).

A :class:`Probe` takes a model and a :class:`ProbeContext` (the suite, the evaluation batches, the suite's result at
that model, the data module, reference weights) and returns named numbers. It may copy and train the model
(relearning) or transform a copy (quantization), but never changes the model it was given. The modules' ``test`` runs
the configured probes after the suite and stores their numbers next to the suite's as ``probe/<name>/<metric>``;
``CurveModule.test`` runs a probe at every ``every``-th t of its grid, and always at both endpoints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.names import PROBE_PREFIX, RECOVERY_SUFFIX
from mcu_lightning.core.streams import stream_generator
from mcu_lightning.metrics.suite import EvalResult, MetricSuite

#: Cross-split aggregates a probe reports by default next to the per-split ones of the splits it evaluates.
DEFAULT_CROSS_METRICS = ("forget_quality", "model_utility")


@dataclass
class ProbeContext:
    """What a probe may read besides the model.

    ``batches``: the evaluation batches ``(split, batch)`` the suite just ran on (this rank's share under DDP).
    ``before``: the suite's result at the unchanged model (for recovery = after - before).
    ``references``: named weight sets by parameter name (``base``: the model before unlearning; ``end0``/``end1``:
    a curve's endpoints), built only when a probe sets ``needs_references``.
    """

    suite: MetricSuite
    batches: Sequence[tuple[str, Mapping[str, Any]]]
    before: EvalResult
    datamodule: Any = None
    references: Mapping[str, Mapping[str, Tensor]] = field(default_factory=dict)

    def evaluate(self, model: nn.Module, splits: Sequence[str] | None = None) -> dict[str, float]:
        """The suite's aggregates at ``model`` on the evaluation batches of ``splits`` (all when ``None``)."""
        batches = [(s, b) for s, b in self.batches if splits is None or s in splits]
        if not batches:
            have = sorted({s for s, _ in self.batches})
            raise InputError(f"no evaluation batches of splits {list(splits or [])}; this evaluation has {have}")
        self.suite.reset()
        with torch.no_grad():
            self.suite.update_many(model, batches)
        return dict(self.suite.compute().aggregates)

    def split_loader(self, split: str) -> Any:
        """The data module's evaluation loader of ``split`` (for probes that build their own batches)."""
        if self.datamodule is None or not hasattr(self.datamodule, "eval_dataloader"):
            raise InputError(f"this probe reads split '{split}' from the data module, but the test run has none")
        return self.datamodule.eval_dataloader(split)


class Probe:
    """Base class of the probes: subclasses implement :meth:`run` and, for a barrier, :meth:`higher_is_better`.

    Args:
        name: the column group ``probe/<name>/...`` (two probes of one run need different names).
        every: on a curve, run at every ``every``-th t of the test grid (t = 0 and t = 1 always).
    """

    #: Set by probes that read ``context.references`` (the module loads the reference weights only then).
    needs_references: bool = False

    def __init__(self, name: str, every: int = 1) -> None:
        if not name or "/" in name:
            raise InputError(f"probe name {name!r}: give a non-empty name without '/' (it becomes probe/<name>/...)")
        if every < 1:
            raise InputError(f"probe '{name}': every={every}; use 1 (every t) or more (every k-th t)")
        self.name = name
        self.every = every

    def run(self, model: nn.Module, context: ProbeContext) -> dict[str, float]:
        """The probe's numbers at ``model`` (metric -> value), without changing ``model``."""
        raise NotImplementedError

    def higher_is_better(self, metric: str, suite: MetricSuite) -> str | bool | None:
        """Direction of one of the probe's metrics: a suite direction (``higher``/``lower``/``zero``/``none``), a bool
        (``True``: higher is better), or ``None`` (no better side, e.g. a distance)."""
        return None

    def generator(self, seed: int = 0) -> torch.Generator:
        """This probe's random stream: ``probe/<name>`` at the probe's own ``seed`` (:mod:`mcu_lightning.core.streams`).

        Not the run's seed, on purpose: every model of a study (base, endpoints, every t of every curve, every seed
        replica) is probed with the same draw, so a curve's end rows equal its endpoints' own tests and differences
        between points or seeds are differences between the models, not between relearn sets."""
        return stream_generator(seed, f"probe/{self.name}")

    def runs_at(self, index: int, count: int) -> bool:
        """Whether the probe runs at grid point ``index`` of ``count`` (every ``every``-th, and the last)."""
        return index % self.every == 0 or index == count - 1

    def __call__(self, model: nn.Module, context: ProbeContext) -> dict[str, float]:
        with preserved_rng(), torch.inference_mode(False):
            numbers = self.run(model, context)
        return {f"{PROBE_PREFIX}{self.name}/{metric}": float(value) for metric, value in numbers.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, every={self.every})"


def check_probes(probes: Sequence[Probe]) -> list[Probe]:
    """The probes as a list, their names unique (each names a column group)."""
    probes = list(probes)
    names = [probe.name for probe in probes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"probe names must be unique (they name the columns probe/<name>/...); repeated: {repeated}")
    return probes


def run_probes(
    probes: Sequence[Probe], model: nn.Module, context: ProbeContext, index: int = 0, count: int = 1
) -> dict[str, float]:
    """Every probe that runs at grid point ``index`` of ``count``, their numbers in one dict."""
    numbers: dict[str, float] = {}
    for probe in probes:
        if probe.runs_at(index, count):
            numbers.update(probe(model, context))
    return numbers


def probe_direction(probes: Sequence[Probe], suite: MetricSuite) -> Callable[[str], str | bool | None]:
    """``name -> higher_is_better`` for the columns ``probe/<name>/<metric>`` of ``probes`` (a KeyError otherwise)."""
    by_name = {probe.name: probe for probe in probes}

    def direction(column: str) -> str | bool | None:
        name, _, metric = column[len(PROBE_PREFIX) :].partition("/")
        if not column.startswith(PROBE_PREFIX) or name not in by_name:
            raise KeyError(f"'{column}' is not a column of the probes {sorted(by_name)}")
        return by_name[name].higher_is_better(metric, suite)

    return direction


def suite_metric_direction(metric: str, suite: MetricSuite) -> str | None:
    """Direction of a suite metric reported by a probe, ``<metric>`` or ``<metric>_recovery`` (after - before moves
    the way the metric does); ``None`` when the suite does not know the metric."""
    base = metric[: -len(RECOVERY_SUFFIX)] if metric.endswith(RECOVERY_SUFFIX) else metric
    try:
        return suite.direction(base)
    except (KeyError, NotImplementedError):
        return None


def with_recovery(
    after: Mapping[str, float], before: Mapping[str, float], keep: Callable[[str], bool]
) -> dict[str, float]:
    """The kept metrics of ``after`` and, for each, ``<metric>_recovery = after - before`` (NaN without a before)."""
    out: dict[str, float] = {}
    for metric, value in after.items():
        if keep(metric):
            out[metric] = value
            out[metric + RECOVERY_SUFFIX] = value - before.get(metric, float("nan"))
    return out


def metric_filter(splits: Sequence[str] | None, metrics: Sequence[str] | None) -> Callable[[str], bool]:
    """The given ``metrics``, or by default every ``split/metric`` of ``splits`` (all splits when ``None``) and the
    cross-split headline metrics (:data:`DEFAULT_CROSS_METRICS`)."""
    if metrics is not None:
        wanted = set(metrics)
        return wanted.__contains__

    def keep(name: str) -> bool:
        split, _, _ = name.rpartition("/")
        if split:
            return splits is None or split in splits
        return name in DEFAULT_CROSS_METRICS

    return keep


def detached_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``batch`` whose tensors are ordinary ones (a test loop's batches are inference tensors, which autograd
    cannot save for backward); call it outside inference mode."""
    return {k: v.clone() if isinstance(v, Tensor) else v for k, v in batch.items()}


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a probe without moving the global RNG streams (CPU and CUDA) that the rest of the test run reads."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield


def model_device(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")
