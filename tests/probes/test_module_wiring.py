"""Probes through the shared test path: FineTuneModule.test and CurveModule.test (every k-th t, both endpoints)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from mcu_lightning.core.names import TEST_METRICS
from mcu_lightning.metrics import ClassificationSuite
from mcu_lightning.models import MLP, save_model
from mcu_lightning.modules import CurveModule, FineTuneModule
from mcu_lightning.probes import Distance, Probe, ProbeContext, Quantize, Relearn
from mcu_lightning.report.curve import BARRIER_JSON, CURVE_METRICS_CSV, read_csv
from tests.probes.helpers import same_state, state_copy


class CountingProbe(Probe):
    """Records every model it sees (the t of a curve point by its first weight) and reports one number."""

    def __init__(self, name: str = "count", every: int = 1) -> None:
        super().__init__(name, every)
        self.seen: list[float] = []

    def run(self, model: nn.Module, context: ProbeContext) -> dict[str, float]:
        self.seen.append(float(next(model.parameters()).detach().flatten()[0]))
        return {"calls": float(len(self.seen)), "forget_acc_seen": context.before.aggregates["forget/acc"]}


def _trainer(root: Path) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(in_features=64, num_classes=10, hidden=16, depth=1)


def test_finetune_test_writes_probe_numbers_and_keeps_the_model(tmp_path: Path, digits) -> None:
    probes = [Relearn(steps=10, lr=0.1, optimizer="SGD"), Quantize(bits=4), CountingProbe()]
    module = FineTuneModule(_mlp(0), suite=ClassificationSuite(), output_dir=str(tmp_path), probes=probes)
    state = state_copy(module.model)
    _trainer(tmp_path).test(module, datamodule=digits, verbose=False)
    aggregates = json.loads((tmp_path / TEST_METRICS).read_text())["aggregates"]
    assert aggregates["probe/relearn/forget/acc_recovery"] > 0.1  # ten SGD steps on the forget set
    assert "probe/quant4/retain/acc" in aggregates and "probe/quant4/test/loss_recovery" in aggregates
    assert aggregates["probe/count/forget_acc_seen"] == aggregates["forget/acc"]  # "before" is the suite's result
    assert same_state(module.model, state)


def test_probes_need_a_suite_and_unique_names() -> None:
    with pytest.raises(ValueError, match="set `suite:`"):
        FineTuneModule(_mlp(0), probes=[CountingProbe()])
    with pytest.raises(ValueError, match="repeated: \\['count'\\]"):
        FineTuneModule(_mlp(0), suite=ClassificationSuite(), probes=[CountingProbe(), CountingProbe()])


def test_curve_test_runs_probes_at_every_kth_t_and_both_endpoints(tmp_path: Path, digits) -> None:
    ends = []
    for seed in (0, 1):
        folder = tmp_path / f"end{seed}"
        save_model(_mlp(seed), folder)
        ends.append(str(folder))
    save_model(_mlp(2), tmp_path / "base")
    every_third = CountingProbe(every=3)
    probes = [every_third, Relearn(every=3, steps=5, lr=0.1, optimizer="SGD"), Distance(every=1)]
    module = CurveModule(
        endpoints=ends,
        eval_ts=5,
        suite=ClassificationSuite(),
        reference=str(tmp_path / "base"),
        output_dir=str(tmp_path / "curve"),
        probes=probes,
    )
    control = [p.detach().clone() for p in module.curve.control_points]
    endpoint_state = {k: v.clone() for k, v in module.curve.state_dict().items()}
    _trainer(tmp_path).test(module, datamodule=digits, verbose=False)

    _, rows = read_csv(tmp_path / "curve" / CURVE_METRICS_CSV)
    assert [r["t"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    probed = [not math.isnan(r["probe/count/calls"]) for r in rows]
    assert probed == [True, False, False, True, True]  # indices 0, 3 and the last
    assert [r["probe/count/calls"] for r in rows if not math.isnan(r["probe/count/calls"])] == [1.0, 2.0, 3.0]
    assert all(not math.isnan(r["probe/distance/l2_base"]) for r in rows)
    assert rows[0]["probe/distance/l2_end0"] == 0.0 and rows[-1]["probe/distance/l2_end1"] == 0.0
    assert rows[-1]["probe/distance/cos_end1"] == pytest.approx(1.0)
    assert rows[0]["probe/relearn/forget/acc"] == pytest.approx(
        rows[0]["forget/acc"] + rows[0]["probe/relearn/forget/acc_recovery"]
    )
    # the curve is what it was: control points and endpoints untouched by relearning
    assert all(torch.equal(a, b) for a, b in zip(control, module.curve.control_points, strict=True))
    assert all(torch.equal(v, module.curve.state_dict()[k]) for k, v in endpoint_state.items())

    summary = json.loads((tmp_path / "curve" / BARRIER_JSON).read_text())["metrics"]
    assert "best_interior" in summary["probe/relearn/forget/acc_recovery"]  # over t = 0, 0.75, 1
    assert summary["probe/relearn/forget/acc_recovery"]["t_best_interior"] == 0.75
    distance = summary["probe/distance/l2_base"]  # a distance has no better side: reported, not ranked
    assert distance["direction"] == "none" and math.isnan(distance["barrier_vs_line"])
