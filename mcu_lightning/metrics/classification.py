"""ClassificationSuite: accuracy and loss per split and a loss-based MIA, for image/tabular unlearning benchmarks.

As in the machine-unlearning literature for classifiers (e.g. SalUn, Fan et al., 2024): accuracy on the forget,
retain and test sets, and a membership-inference AUROC of the per-sample loss between forget (members) and test
(non-members). With an oracle (retain-only model) evaluation, ``split/acc_gap = |acc - acc_oracle|``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from mcu_lightning.losses.per_sample import sequence_nll
from mcu_lightning.metrics.mia import mia_auc
from mcu_lightning.metrics.oracle import OracleSource, load_oracle, oracle_aggregate
from mcu_lightning.metrics.suite import Direction, MetricSuite, nanmean
from mcu_lightning.models.forward import call_model


class ClassificationSuite(MetricSuite):
    """Per split: ``acc`` (mean of argmax == label) and ``loss`` (mean cross-entropy); across splits: ``mia_auc``
    (loss scores, forget labelled 0 and test 1 as in open-unlearning, so 1 = the forget set is detectable, 0.5 = not);
    with an oracle: ``split/acc_gap`` and ``mia_auc_gap`` (absolute differences to the oracle's values).

    Args:
        oracle: the oracle's test JSON (``EvalResult.to_json``), for the gaps.
        mia_splits: (members, non-members) of the loss attack.
    """

    columns = ("loss", "correct")

    def __init__(self, oracle: OracleSource | None = None, mia_splits: tuple[str, str] = ("forget", "test")) -> None:
        super().__init__()
        if len(mia_splits) != 2:
            raise ValueError(f"mia_splits must name (members, non-members), got {mia_splits}")
        self.oracle = oracle
        self.mia_splits = tuple(mia_splits)

    def _update_split(self, model: nn.Module, split: str, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        logits = call_model(model, batch)
        labels = batch["labels"]
        if logits.dim() != 2:
            raise ValueError(f"ClassificationSuite needs logits [B, C], got shape {tuple(logits.shape)} on '{split}'")
        loss, _ = sequence_nll(logits, labels)
        return {"loss": loss, "correct": (logits.argmax(dim=-1) == labels).double()}

    def _aggregate(self, tables: Mapping[str, Mapping[str, Tensor]]) -> dict[str, float]:
        aggregates: dict[str, float] = {}
        for split, table in tables.items():
            aggregates[f"{split}/acc"] = nanmean(table["correct"])
            aggregates[f"{split}/loss"] = nanmean(table["loss"])
        members, others = self.mia_splits
        if members in tables and others in tables:
            aggregates["mia_auc"] = mia_auc(tables[members]["loss"].cpu().numpy(), tables[others]["loss"].cpu().numpy())
        oracle = load_oracle(self.oracle) if self.oracle is not None else None
        if oracle is None:
            return aggregates
        gaps: dict[str, float] = {}
        for name, value in aggregates.items():
            if name.endswith("/acc") or name == "mia_auc":
                reference = oracle_aggregate(oracle, name)
                if reference is None:
                    warnings.warn(f"the oracle evaluation has no '{name}'; no gap reported for it", stacklevel=2)
                    continue
                gap_name = f"{name}_gap" if name == "mia_auc" else f"{name[: -len('/acc')]}/acc_gap"
                gaps[gap_name] = abs(value - reference)
        aggregates.update(gaps)
        return aggregates

    def direction(self, name: str) -> Direction:
        """Unlearning reading: on the forget split ``acc`` is better lower and ``loss`` higher (the model should no
        longer fit it); on the other splits (retain, test: the model's utility) ``acc`` higher and ``loss`` lower.
        Gaps to the oracle and ``mia_auc`` (1 = the forget set is detectable) are better lower."""
        split, _, metric = name.rpartition("/")
        forget = split == self.mia_splits[0]
        if split and metric == "acc":
            return "lower" if forget else "higher"
        if split and metric == "loss":
            return "higher" if forget else "lower"
        if (split and metric == "acc_gap") or name in ("mia_auc", "mia_auc_gap"):
            return "lower"
        raise KeyError(f"ClassificationSuite does not report a metric named '{name}'")
