"""ClassificationSuite: accuracy and loss per split and a loss-based MIA, for image/tabular unlearning benchmarks.

As in the machine-unlearning literature for classifiers (e.g. SalUn, Fan et al., 2024): accuracy on the forget,
retain and test sets, and a membership-inference AUROC of the per-sample loss between forget (members) and test
(non-members). With an oracle (retain-only model) evaluation, ``split/acc_gap = |acc - acc_oracle|``. MU-Bench's
scores (:mod:`mcu_lightning.metrics.mubench`): ``zrf`` (Zero Retrain Forgetting) on the forget set and, given the
original model's test accuracy, ``unlearn_overall`` (its harmonic-mean overall unlearning score).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from mcu_lightning.core.direction import toward
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import call_model
from mcu_lightning.core.per_sample import sequence_nll
from mcu_lightning.metrics.mia import mia_auc
from mcu_lightning.metrics.mubench import overall_unlearning_score, random_teacher, zrf_divergence
from mcu_lightning.metrics.oracle import OracleSource, load_oracle, oracle_aggregate
from mcu_lightning.metrics.suite import Direction, MetricSuite, nanmean


class ClassificationSuite(MetricSuite):
    """Per split: ``acc`` (mean of argmax == label) and ``loss`` (mean cross-entropy); across splits: ``mia_auc``
    (loss scores, forget labelled 0 and test 1 as in open-unlearning, so 1 = the forget set is detectable, 0.5 = not);
    with an oracle: ``split/acc_gap`` and ``mia_auc_gap`` (absolute differences to the oracle's values); MU-Bench's
    ``zrf`` on the forget split (the members of ``mia_splits``) and ``unlearn_overall`` (with ``original_test_acc``).

    Args:
        oracle: the oracle's test JSON (``EvalResult.to_json``), for the gaps.
        mia_splits: (members, non-members) of the loss attack; the members are the forget set of ZRF and MU-Bench's
            score, the non-members its test set.
        original_test_acc: the original (pre-unlearning) model's test accuracy, MU-Bench's ``orig_acc[...]['dt']``;
            ``None``: no ``unlearn_overall``.
        zrf_draws: random teachers ZRF averages over (MU-Bench: 500); 0 turns ZRF off.
        zrf_seed: the seed of those teachers (fixed, so every evaluation and every process uses the same ones).
    """

    columns = ("loss", "correct", "zrf_js")

    def __init__(
        self,
        oracle: OracleSource | None = None,
        mia_splits: tuple[str, str] = ("forget", "test"),
        original_test_acc: float | None = None,
        zrf_draws: int = 500,
        zrf_seed: int = 0,
    ) -> None:
        super().__init__()
        if len(mia_splits) != 2:
            raise InputError(f"mia_splits must name (members, non-members), got {mia_splits}")
        if original_test_acc is not None and not 0.0 <= original_test_acc <= 1.0:
            raise InputError(f"original_test_acc={original_test_acc} is not an accuracy; give a value in [0, 1]")
        if zrf_draws < 0:
            raise InputError(f"zrf_draws={zrf_draws}; give 0 (no ZRF) or a number of random teachers such as 500")
        self.oracle = oracle
        self.mia_splits = tuple(mia_splits)
        self.roles = {self.mia_splits[0]: "forget"}  # the test set (the non-members) is utility here
        self.original_test_acc = original_test_acc
        self.zrf_draws, self.zrf_seed = zrf_draws, zrf_seed
        self.num_classes: int | None = None
        self.mia_target = 0.5  # the oracle's mia_auc once computed with one: what mia_auc is ranked against
        self._teachers: Tensor | None = None

    def _update_split(self, model: nn.Module, split: str, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        logits = call_model(model, batch)
        labels = batch["labels"]
        if logits.dim() != 2:
            raise InputError(f"ClassificationSuite needs logits [B, C], got shape {tuple(logits.shape)} on '{split}'")
        loss, _ = sequence_nll(logits, labels)
        self.num_classes = logits.size(-1)
        values = {"loss": loss, "correct": (logits.argmax(dim=-1) == labels).double()}
        if split == self.mia_splits[0] and self.zrf_draws:
            if self._teachers is None or self._teachers.size(-1) != logits.size(-1):
                self._teachers = random_teacher(logits.size(-1), self.zrf_draws, self.zrf_seed)
            values["zrf_js"] = zrf_divergence(logits.detach(), self._teachers)
        return values

    def _aggregate(self, tables: Mapping[str, Mapping[str, Tensor]]) -> dict[str, float]:
        aggregates: dict[str, float] = {}
        for split, table in tables.items():
            aggregates[f"{split}/acc"] = nanmean(table["correct"])
            aggregates[f"{split}/loss"] = nanmean(table["loss"])
        members, others = self.mia_splits
        if members in tables and others in tables:
            aggregates["mia_auc"] = mia_auc(tables[members]["loss"].cpu().numpy(), tables[others]["loss"].cpu().numpy())
        if members in tables and self.zrf_draws:
            aggregates["zrf"] = 1.0 - nanmean(tables[members]["zrf_js"])
        if members in tables and others in tables and self.original_test_acc is not None and self.num_classes:
            aggregates["unlearn_overall"] = overall_unlearning_score(
                aggregates[f"{others}/acc"], aggregates[f"{members}/acc"], self.original_test_acc, 1 / self.num_classes
            )
        oracle = load_oracle(self.oracle) if self.oracle is not None else None
        reference = oracle_aggregate(oracle, "mia_auc") if oracle is not None else None
        self.mia_target = float(reference) if reference is not None and math.isfinite(reference) else 0.5
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
        Gaps to the oracle are better lower; ``mia_auc`` closer to the oracle's (``toward <x>``; 0.5 without an oracle:
        below it the forget set is detectable by being *less* likely, which leaks as much as above). ``zrf`` and
        ``unlearn_overall`` (MU-Bench) are better higher."""
        if name in ("zrf", "unlearn_overall"):
            return "higher"
        split, _, metric = name.rpartition("/")
        forget = self.role(split) == "forget"
        if split and metric == "acc":
            return "lower" if forget else "higher"
        if split and metric == "loss":
            return "higher" if forget else "lower"
        if (split and metric == "acc_gap") or name == "mia_auc_gap":
            return "lower"
        if name == "mia_auc":
            return toward(self.mia_target)
        raise KeyError(f"ClassificationSuite does not report a metric named '{name}'")
