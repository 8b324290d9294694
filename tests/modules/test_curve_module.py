"""Mode connectivity on digits through the Lightning Trainer (Garipov et al., 2018, Fig. 1 in miniature).

Two ``FineTuneModule`` MLPs with BatchNorm trained from different seeds are separated by a loss barrier on
the straight line between them; a quadratic Bezier curve fitted by ``CurveModule`` lowers it. Training moves
only the control point; ``test`` writes one CSV row per t whose endpoint rows are exactly the endpoints'
own metrics once their BatchNorm statistics are recomputed on retain data the same way.
"""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from mcu_lightning.curves import Bezier, recompute_batchnorm
from mcu_lightning.data import ClassificationDataModule
from mcu_lightning.losses import NLL
from mcu_lightning.metrics import ClassificationSuite
from mcu_lightning.models import MLP, load_model
from mcu_lightning.modules import CurveModule, FineTuneModule

pytestmark = pytest.mark.slow

EVAL_TS = 11


def _trainer(root: Path, **kwargs: Any) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(root),
        **kwargs,
    )


def _data(**kwargs: Any) -> ClassificationDataModule:
    return ClassificationDataModule(dataset="digits", image_size=8, batch_size=32, **kwargs)


def _rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two digits MLPs (hidden 32, BatchNorm) from seeds 0 and 1, exported and tested by FineTuneModule."""
    root = tmp_path_factory.mktemp("digits_endpoints")
    folders = []
    for seed in (0, 1):
        seed_everything(seed)
        module = FineTuneModule(
            MLP(in_features=64, num_classes=10, hidden=32, depth=2),
            optimizer=partial(torch.optim.AdamW, lr=3e-3),
            suite=ClassificationSuite(),
            output_dir=str(root / f"seed{seed}"),
        )
        trainer = _trainer(root, max_epochs=3)
        trainer.fit(module, datamodule=_data(finetune_split="full", seed=seed))
        trainer.test(module, datamodule=_data(), verbose=False)
        folders.append(root / f"seed{seed}")
    return folders


@pytest.fixture(scope="module")
def curve_run(endpoints: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The straight line tested before fitting (``init="linear"``), then the fitted curve tested again."""
    root = tmp_path_factory.mktemp("digits_curve")
    seed_everything(0)
    module = CurveModule(
        endpoints=[str(folder / "model") for folder in endpoints],
        shape=Bezier(3),
        init="linear",
        objective=NLL(split="retain"),
        eval_ts=EVAL_TS,
        suite=ClassificationSuite(),
        optimizer=partial(torch.optim.AdamW, lr=1e-2),
        output_dir=str(root / "line"),
    )
    before = {
        "control": [p.detach().clone() for p in module.curve.control_points],
        "buffers": {k: v.detach().clone() for k, v in module.curve.named_buffers()},
        "ends": [{k: v.detach().clone() for k, v in module.curve.params(t).items()} for t in (0.0, 1.0)],
    }
    _trainer(root).test(module, datamodule=_data(), verbose=False)
    module.output_dir_arg = str(root / "curve")
    # test writes theta(t) into the template (the working copy); fit must leave it alone
    template_before = {k: v.detach().clone() for k, v in module.template.named_parameters()}
    _trainer(root, max_epochs=4).fit(module, datamodule=_data())
    template_after = {k: v.detach().clone() for k, v in module.template.named_parameters()}
    _trainer(root).test(module, datamodule=_data(), verbose=False)
    before["template"] = template_before
    return {"module": module, "root": root, "before": before, "template_after_fit": template_after}


def test_fitted_curve_removes_most_of_the_line_barrier(curve_run: dict[str, Any]) -> None:
    line = [row["test/loss"] for row in _rows(curve_run["root"] / "line" / "curve_metrics.csv")]
    curve = [row["test/loss"] for row in _rows(curve_run["root"] / "curve" / "curve_metrics.csv")]
    assert line[0] == pytest.approx(curve[0], rel=1e-6) and line[-1] == pytest.approx(curve[-1], rel=1e-6)
    barrier_line = max(line) - max(line[0], line[-1])
    assert barrier_line > 0.2, f"two seeds should be separated by a loss barrier on the line: {line}"
    assert max(line) > 2 * max(line[0], line[-1])
    assert max(curve) < max(line) - 0.5 * barrier_line, f"line {line}\ncurve {curve}"
    # the interior of the line is where the barrier sits, not an endpoint
    assert 0 < line.index(max(line)) < EVAL_TS - 1


def test_fit_moves_only_the_control_points(curve_run: dict[str, Any]) -> None:
    module, before = curve_run["module"], curve_run["before"]
    after_control = list(module.curve.control_points)
    assert len(after_control) == 1  # Bezier(3): one bend between the two frozen endpoints
    assert not torch.equal(after_control[0].detach(), before["control"][0])
    for name, tensor in module.curve.named_buffers():
        assert torch.equal(tensor, before["buffers"][name]), f"curve buffer {name} changed during fit"
    for name, tensor in module.template.named_parameters():
        assert not tensor.requires_grad
        assert torch.equal(curve_run["template_after_fit"][name], before["template"][name]), f"fit changed {name}"
    for t, ends in zip((0.0, 1.0), before["ends"], strict=True):
        for name, tensor in module.curve.params(t).items():
            assert torch.equal(tensor.detach(), ends[name]), f"endpoint t={t} parameter {name} changed"
    assert [p for p in module.parameters() if p.requires_grad] == after_control


def _recomputed_endpoint_metrics(folder: Path) -> dict[str, float]:
    """The endpoint's suite after the curve's own BatchNorm recompute (all retain batches): the comparable number."""
    data = _data()
    data.setup("test")
    model = load_model(folder / "model")
    recompute_batchnorm(model, data.eval_dataloader("retain"))
    model.eval()
    suite = ClassificationSuite()
    suite.reset()
    for split in data.eval_splits:
        for batch in data.eval_dataloader(split):
            suite.update(model, split, batch)
    return suite.compute().aggregates


def test_curve_metrics_csv_endpoint_rows_are_the_endpoints(curve_run: dict[str, Any], endpoints: list[Path]) -> None:
    rows = _rows(curve_run["root"] / "curve" / "curve_metrics.csv")
    assert [row["t"] for row in rows] == pytest.approx([i / (EVAL_TS - 1) for i in range(EVAL_TS)])
    for row, folder in ((rows[0], endpoints[0]), (rows[-1], endpoints[1])):
        exact = _recomputed_endpoint_metrics(folder)
        assert set(exact) <= set(row)
        for name, value in exact.items():
            assert row[name] == pytest.approx(value, rel=1e-6, abs=1e-7), name
        # against the endpoint's own test (running BatchNorm statistics from training): close, not equal
        own = json.loads((folder / "test_metrics.json").read_text())["aggregates"]
        assert abs(row["test/acc"] - own["test/acc"]) < 0.03
        assert abs(row["test/loss"] - own["test/loss"]) < 0.1


def test_barrier_summary_and_figure_are_written(curve_run: dict[str, Any]) -> None:
    out = curve_run["root"] / "curve"
    summary = json.loads((out / "barrier_summary.json").read_text())
    rows = _rows(out / "curve_metrics.csv")
    loss = summary["metrics"]["test/loss"]
    series = [row["test/loss"] for row in rows]
    assert loss["barrier_vs_max_end"] == pytest.approx(max(series) - max(series[0], series[-1]), rel=1e-5)
    assert loss["value_t0"] == pytest.approx(series[0], rel=1e-6)
    assert summary["path_length"] > 0
    figure = out / "curve_metrics.png"
    assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_curve_test_reports_its_points_and_each_points_batches(curve_run: dict[str, Any], tmp_path: Path) -> None:
    """Progress hooks: ``on_curve_point`` before the first point and after each, ``on_curve_batch`` as the suite
    works through a point's batches (what the study's progress bar shows)."""
    from lightning.pytorch import Callback

    class Recorder(Callback):
        def __init__(self) -> None:
            self.points: list[tuple[int, int]] = []
            self.batches: list[tuple[int, int]] = []

        def on_curve_point(self, trainer: Any, module: Any, done: int, total: int, t: float) -> None:
            self.points.append((done, total))

        def on_curve_batch(self, trainer: Any, module: Any, done: int, total: int) -> None:
            self.batches.append((done, total))

    recorder = Recorder()
    module = curve_run["module"]
    module.output_dir_arg = str(tmp_path / "progress")
    _trainer(tmp_path, callbacks=[recorder]).test(module, datamodule=_data(), verbose=False)
    assert recorder.points == [(done, EVAL_TS) for done in range(EVAL_TS + 1)]
    per_point = len(recorder.batches) // EVAL_TS
    assert per_point >= 3 and len(recorder.batches) == per_point * EVAL_TS  # forget, retain, test: 1+ batch each
    assert recorder.batches[:per_point] == [(done, per_point) for done in range(1, per_point + 1)]


def test_a_suite_reports_progress_after_each_batch() -> None:
    from mcu_lightning.metrics import MetricSuite

    calls: list[tuple[int, int]] = []

    class Counting(MetricSuite):
        def update(self, model: Any, split: str, batch: Any) -> None:
            pass

    Counting().update_many(torch.nn.Identity(), [("forget", {}), ("retain", {})], lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]
