"""The metric-suite seam: ``bind``, ``reset``, ``update(model, split, batch)``, ``compute() -> EvalResult``.

A suite keeps one :class:`SampleStore` per evaluation split: a torchmetrics ``Metric`` whose state is the per-sample
values of the split together with each sample's ``index``, concatenated across processes (``dist_reduce_fx="cat"``).
``compute`` gathers, drops the duplicates a padded ``DistributedSampler`` adds (by index) and sorts by index, so the
results are identical on one process and on N. Concrete suites: :class:`~mcu_lightning.metrics.qa_suite.QASuite`
and :class:`~mcu_lightning.metrics.classification.ClassificationSuite`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.compat import MCU, check_compat
from mcu_lightning.core.direction import ARROWS as NAMED_ARROWS
from mcu_lightning.core.direction import NAMED
from mcu_lightning.core.errors import InputError

#: Which way a metric is better in the unlearning reading: ``higher``, ``lower``, ``zero`` (closer to 0 from either
#: side, privleak), ``toward <x>`` (closer to x from either side: an MIA AUC against the oracle's) or ``none``
#: (reported, never ranked: a holdout split's values); see :mod:`mcu_lightning.core.direction`.
Direction = str
DIRECTIONS: tuple[str, ...] = NAMED
#: What an evaluation split is for: ``forget`` (the data to unlearn), ``retain`` (the data to keep fitting),
#: ``holdout`` (never trained on: the MIA non-members, reported and not ranked) or ``utility`` (general knowledge the
#: model should keep: real authors, world facts, a test set). A suite states each split's role once
#: (:meth:`MetricSuite.role`); every direction it gives (and so barriers, "beats both endpoints", ``export_best`` and
#: the figures' arrows) reads it, never a split's name or another option.
Role = Literal["forget", "retain", "holdout", "utility"]
ROLES: tuple[str, ...] = ("forget", "retain", "holdout", "utility")
#: How report tables mark each direction next to a metric's name.
ARROWS: dict[str, str] = dict(NAMED_ARROWS)


@dataclass
class EvalResult:
    """What one evaluation (one model, or one t of a curve) produced.

    ``aggregates``: ``"split/metric"`` (``forget/prob``) or bare cross-split names (``forget_quality``) -> value.
    ``per_sample``: split -> statistic -> values ordered by sample index (the ``index`` list included).
    ``directions``: aggregate name -> its :data:`Direction` as the suite states it (empty when read from a file that
    has none).
    ``records``: split -> column -> per-sample values that are not one number (a generation's text, the losses of
    the K perturbed answers), ordered by the column ``index`` of the same table; empty for suites that keep none.
    """

    aggregates: dict[str, float] = field(default_factory=dict)
    per_sample: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)
    records: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write atomically: a temporary file in the same folder, then ``os.replace``. NaN is written as ``NaN``."""
        payload: dict[str, Any] = {
            "aggregates": self.aggregates,
            "per_sample": self.per_sample,
            "directions": self.directions,
        }
        if self.records:
            payload["records"] = self.records
        atomic_write(path, json.dumps(payload, indent=1).encode())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> EvalResult:
        with open(path) as handle:
            payload = json.load(handle)
        if not isinstance(payload, dict) or "aggregates" not in payload:
            raise InputError(f"'{path}' is not an EvalResult JSON (no 'aggregates'); write one with EvalResult.to_json")
        aggregates = {name: float(value) for name, value in payload["aggregates"].items()}
        per_sample = {
            split: {stat: [float(v) for v in values] for stat, values in table.items()}
            for split, table in payload.get("per_sample", {}).items()
        }
        directions = {name: str(value) for name, value in payload.get("directions", {}).items()}
        records = {split: dict(table) for split, table in payload.get("records", {}).items()}
        return cls(aggregates=aggregates, per_sample=per_sample, directions=directions, records=records)


class SampleStore(Metric):
    """Per-sample values of one split, reduced across processes by concatenation, de-duplicated by index.

    The state is one flat float64 list of rows ``[index, *columns]`` so that the columns of a sample can never
    come apart in the gather (every rank concatenates whole rows, and float64 holds indices exactly).
    """

    full_state_update = False
    higher_is_better = None

    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__()
        self.columns: tuple[str, ...] = ("index", *columns)
        self.add_state("rows", default=[], dist_reduce_fx="cat")

    def update(self, index: Tensor, values: Mapping[str, Tensor]) -> None:
        unknown = set(values) - set(self.columns)
        if unknown:
            raise KeyError(f"unknown per-sample statistics {sorted(unknown)}; this store holds {list(self.columns)}")
        index = torch.as_tensor(index).reshape(-1)
        size = index.numel()
        nan = torch.full((size,), math.nan, dtype=torch.float64, device=self.device)
        cols = [index.to(self.device, torch.float64)]
        for name in self.columns[1:]:
            value = values.get(name)
            cols.append(nan if value is None else value.detach().reshape(-1).to(self.device, torch.float64))
        self.rows.append(torch.stack(cols, dim=1).reshape(-1))

    def compute(self) -> dict[str, Tensor]:
        """``{column: values}`` with one row per distinct index, sorted by index."""
        rows = self.rows
        flat = dim_zero_cat(rows) if (isinstance(rows, Tensor) or len(rows)) else torch.zeros(0, dtype=torch.float64)
        table = flat.reshape(-1, len(self.columns))
        index = table[:, 0]
        unique, inverse = torch.unique(index, sorted=True, return_inverse=True)
        order = torch.arange(index.numel(), device=index.device)
        first = torch.full((unique.numel(),), index.numel(), dtype=torch.long, device=index.device)
        first = first.scatter_reduce(0, inverse, order, reduce="amin")
        table = table[first]
        return {name: table[:, i] for i, name in enumerate(self.columns)}


def batch_index(split: str, batch: Mapping[str, Any]) -> Tensor:
    """The batch's sample indices, or a clear error: the stores key every value by them."""
    if "index" not in batch:
        raise KeyError(f"evaluation batch of split '{split}' lacks 'index'; the data module must provide it")
    return torch.as_tensor(batch["index"])


class MetricSuite(nn.Module):
    """Base class of the evaluation suites (docs/internals.md, "Metric suites").

    Subclasses set ``columns`` (the per-sample statistics they store), implement ``_update_split`` (per-sample
    values of one batch; or override :meth:`update_many` where batches share work, as ``QASuite`` does) and
    ``_aggregate`` (the aggregates from the gathered per-sample tables).
    """

    columns: tuple[str, ...] = ()
    #: Whose definitions the suite follows where they differ (:mod:`mcu_lightning.core.compat`).
    compat: str = MCU

    def __init__(self) -> None:
        super().__init__()
        self.stores = nn.ModuleDict()
        self.tokenizer: Any = None
        self._records: dict[str, dict[int, dict[str, Any]]] = {}
        #: split -> :data:`Role`, as the suite was told; :meth:`role` fills in the rest.
        self.roles: dict[str, str] = {}

    def bind(self, tokenizer: Any = None) -> None:
        """Give the suite what it needs from the data side (the tokenizer, to decode generations)."""
        self.tokenizer = tokenizer

    def set_compat(self, mode: str | None) -> None:
        """Follow ``mode``'s definitions where they differ (:mod:`mcu_lightning.core.compat`): the data module's
        ``compat``, handed over by the module at ``setup``."""
        self.compat = check_compat(mode)

    def reset(self) -> None:
        for store in self.stores.values():
            store.reset()
        self._records = {}

    def record(self, split: str, index: Tensor, columns: Mapping[str, Sequence[Any]]) -> None:
        """Keep per-sample values that are not one number (JSON-able: texts, lists of floats) for ``split``, by
        sample index; the first value of an index wins, as in :class:`SampleStore`."""
        rows = self._records.setdefault(split, {})
        for i, sample in enumerate(torch.as_tensor(index).reshape(-1).tolist()):
            row = rows.setdefault(int(sample), {})
            for name, values in columns.items():
                row.setdefault(name, values[i])

    def gathered_records(self) -> dict[str, dict[str, list[Any]]]:
        """The records of every process (``all_gather_object`` under ``torch.distributed``; lower ranks win a
        duplicated index), as ``{split: {"index": [...], column: [...]}}`` sorted by index."""
        parts = [self._records]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, self._records)
        merged: dict[str, dict[int, dict[str, Any]]] = {}
        for part in parts:
            for split, rows in (part or {}).items():
                for sample, row in rows.items():
                    merged.setdefault(split, {}).setdefault(sample, row)
        tables: dict[str, dict[str, list[Any]]] = {}
        for split, rows in merged.items():
            order = sorted(rows)
            names = sorted({name for row in rows.values() for name in row})
            table: dict[str, list[Any]] = {"index": [float(sample) for sample in order]}
            table.update({name: [rows[sample].get(name) for sample in order] for name in names})
            tables[split] = table
        return tables

    def store(self, split: str, device: torch.device) -> SampleStore:
        """The store of ``split``, created on first use on the batch's device."""
        if split not in self.stores:
            self.stores[split] = SampleStore(self.columns).to(device)
        store = self.stores[split]
        if store.device != device:
            store.to(device)
        return store

    @torch.no_grad()
    def update(self, model: nn.Module, split: str, batch: Mapping[str, Any]) -> None:
        index = batch_index(split, batch)
        values = self._update_split(model, split, batch)
        self.store(split, index.device).update(index, values)

    @torch.no_grad()
    def update_many(
        self,
        model: nn.Module,
        batches: Sequence[tuple[str, Mapping[str, Any]]],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """:meth:`update` for every ``(split, batch)``; a suite that can share work across batches (QASuite's
        generation) overrides it. The per-sample results are the same either way. ``progress(done, total)`` is
        called after each unit of work (a progress bar's batches)."""
        for done, (split, batch) in enumerate(batches, start=1):
            self.update(model, split, batch)
            if progress is not None:
                progress(done, len(batches))

    def compute(self) -> EvalResult:
        tables = {
            # reshape: torchmetrics squeezes one-element outputs to scalars
            split: {name: values.reshape(-1) for name, values in store.compute().items()}
            for split, store in self.stores.items()
            if store.update_count > 0
        }
        per_sample = {
            split: {name: values.tolist() for name, values in table.items() if not torch.isnan(values).all()}
            for split, table in tables.items()
        }
        aggregates = self._aggregate(tables)
        directions = {name: self.direction(name) for name in aggregates}
        records = self.gathered_records()
        return EvalResult(aggregates=aggregates, per_sample=per_sample, directions=directions, records=records)

    def role(self, split: str) -> Role:
        """The :data:`Role` of ``split``: the one the suite was given, else ``retain`` for a split named ``retain``,
        else ``utility``."""
        return self.roles.get(split) or ("retain" if split == "retain" else "utility")  # type: ignore[return-value]

    def direction(self, name: str) -> Direction:
        """Which way aggregate ``name`` is better in the unlearning reading (:data:`Direction`); the one statement
        barriers, "beats both endpoints" and the report's arrows read. Raises ``KeyError`` for a name the suite does
        not report."""
        raise NotImplementedError

    def higher_is_better(self, name: str) -> bool:
        """Whether a larger value of aggregate ``name`` is better: ``direction(name) == "higher"``."""
        return self.direction(name) == "higher"

    def export(self, result: EvalResult, folder: str | os.PathLike) -> list[str]:
        """Write ``result`` into ``folder`` in other tools' formats too; return the file names (none by default)."""
        return []

    # -- for subclasses ----------------------------------------------------------------------------
    def _update_split(self, model: nn.Module, split: str, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        raise NotImplementedError

    def _aggregate(self, tables: Mapping[str, Mapping[str, Tensor]]) -> dict[str, float]:
        raise NotImplementedError


@torch.no_grad()
def evaluate_suite(
    model: nn.Module,
    suite: MetricSuite,
    batches: Sequence[tuple[str, Mapping[str, Any]]],
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """One evaluation of ``model`` (a model, one point of a curve, an ensemble) on ``(split, batch)`` pairs, as
    ``CurveModule.test`` runs each t: ``reset``, ``update_many`` (the QA suite generates for all prompts at once),
    ``compute``."""
    suite.reset()
    suite.update_many(model, batches, progress)
    return suite.compute()


def nanmean(values: Tensor) -> float:
    """Mean over the finite values (NaN if none)."""
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else math.nan
