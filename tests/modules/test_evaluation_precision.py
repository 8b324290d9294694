"""Evaluations that run outside ``test_step`` (a curve's t loop, the probes, an evaluation during training) use the
Trainer's precision, as the endpoints' own ``test_step`` does: under ``bf16-mixed`` a curve point at t = 0 scores
exactly what the endpoint scores (it used to be scored in fp32 while its endpoint was scored in bf16)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch import Trainer

from mcu_lightning.data import QADataModule
from mcu_lightning.metrics import QASuite
from mcu_lightning.models import save_model, tiny_causal_lm
from mcu_lightning.modules import CurveModule, FineTuneModule

KEYS = ("forget/prob", "forget/rouge", "retain/prob", "retain/truth_ratio")


def _data() -> QADataModule:
    return QADataModule(
        tokenizer="fictitious", batch_size=4, eval_batch_size=16, max_length=48, eval_splits=["forget", "retain"]
    )


def _trainer(precision: str) -> Trainer:
    return Trainer(
        accelerator="cpu", devices=1, precision=precision, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip


def _endpoint_scores(path: Path, precision: str, out: Path) -> dict[str, float]:
    module = FineTuneModule(str(path), suite=QASuite(max_new_tokens=4), output_dir=str(out), export=False)
    _trainer(precision).test(module, datamodule=_data(), verbose=False)
    return {key: module.last_test_result.aggregates[key] for key in KEYS}


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("precision")
    models = [tiny_causal_lm(tokenizer="fictitious", hidden_size=32, intermediate_size=64, seed=s) for s in (0, 1)]
    return [save_model(model, root / f"end{i}") for i, model in enumerate(models)]


def test_a_curve_point_is_scored_in_the_precision_its_endpoint_was(endpoints: list[Path], tmp_path: Path) -> None:
    bf16 = _endpoint_scores(endpoints[0], "bf16-mixed", tmp_path / "e16")
    fp32 = _endpoint_scores(endpoints[0], "32-true", tmp_path / "e32")
    assert bf16 != fp32, "bf16 autocast must change the scores, or this test shows nothing"
    curve = CurveModule(
        endpoints=[str(e) for e in endpoints], eval_ts=[0.0, 1.0], suite=QASuite(max_new_tokens=4),
        output_dir=str(tmp_path / "curve"),
    )  # fmt: skip
    _trainer("bf16-mixed").test(curve, datamodule=_data(), verbose=False)
    at_start = {key: curve.curve_results[0].aggregates[key] for key in KEYS}
    assert at_start == bf16
