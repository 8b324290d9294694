"""What a study does with a curve checkpoint: an ensemble of K of its points and the metric plane, through the
module ``load_curve_checkpoint`` rebuilds (its ``curve`` and its working copy ``template``)."""

from __future__ import annotations

from pathlib import Path

import torch

from mcu_lightning.curves import Ensemble
from mcu_lightning.metrics import ClassificationSuite, evaluate_suite
from mcu_lightning.modules.curve import CurveModule
from mcu_lightning.modules.export import load_curve_checkpoint
from mcu_lightning.modules.plane import metric_plane
from mcu_lightning.report.plane import write_plane_report
from tests.reliability.helpers import mlp_endpoint


def _checkpoint(root: Path) -> Path:
    module = CurveModule(endpoints=[str(mlp_endpoint(root / "a", 0)), str(mlp_endpoint(root / "b", 1))])
    torch.manual_seed(3)
    with torch.no_grad():  # what training does: the control point leaves the straight line
        module.curve.control_points[0].add_(0.05 * torch.randn_like(module.curve.control_points[0]))
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, root / "last.ckpt")
    return root / "last.ckpt"


def test_ensemble_and_plane_of_a_curve_checkpoint(tmp_path):
    module, _ = load_curve_checkpoint(_checkpoint(tmp_path))
    generator = torch.Generator().manual_seed(0)
    bn = [{"inputs": torch.randn(32, 64, generator=generator)}]  # retain batches (retain_batches(checkpoint, n))
    batch = {"inputs": torch.randn(16, 64, generator=generator), "labels": torch.randint(0, 10, (16,)),
             "index": torch.arange(16)}  # fmt: skip
    batches = [("forget", batch), ("test", batch)]
    suite = ClassificationSuite(zrf_draws=0)

    one = Ensemble.from_curve(module.curve, [0.35], working=module.template, bn_batches=bn)
    point = module.model_at(0.35, bn)
    torch.testing.assert_close(one(batch["inputs"]), torch.log_softmax(point(batch["inputs"]), -1))
    ensemble = Ensemble.from_curve(module.curve, 3, working=module.template, bn_batches=bn)
    result = evaluate_suite(ensemble, suite, batches)
    assert 0.0 <= result.aggregates["test/acc"] <= 1.0 and "mia_auc" in result.aggregates

    plane = metric_plane(module.curve, suite, batches, ["test/loss"], points=2, working=module.template, bn_batches=bn)
    paths = write_plane_report(plane, tmp_path / "plane")
    assert [p.name for p in paths] == ["plane_metrics.csv", "plane.json", "plane_test_loss.png"]
    assert isinstance(module, CurveModule)
