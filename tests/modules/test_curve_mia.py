"""The MIA attacks along a curve: Min-K%++, GradNorm and the reference attack at every t of a ``CurveModule`` test,
GradNorm differentiating the curve's frozen working copy and leaving it frozen, the reference attack at t = 0 against
the first endpoint itself (AUC 0.5), and t = 1 scoring as the second endpoint does."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from mcu_lightning.curves import Linear
from mcu_lightning.data import QADataModule
from mcu_lightning.metrics import QASuite, evaluate_suite
from mcu_lightning.models import load_model, save_model, tiny_causal_lm
from mcu_lightning.modules import CurveModule

pytestmark = pytest.mark.slow

ATTACKS = ["loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm", "reference"]


def data() -> QADataModule:
    return QADataModule(forget_split="forget10", num_people=20, max_length=48, eval_batch_size=64)


def test_every_attack_along_the_curve(tmp_path: Path) -> None:
    ends = []
    for seed in (0, 1):
        model = tiny_causal_lm(
            tokenizer="fictitious", hidden_size=16, intermediate_size=32, num_hidden_layers=1, seed=seed
        )
        ends.append(save_model(model, tmp_path / f"end{seed}"))
    suite = QASuite(rouge=False, splits=["forget", "holdout"], mia_attacks=ATTACKS, reference_model=str(ends[0]))
    module = CurveModule([str(e) for e in ends], shape=Linear(), eval_ts=3, suite=suite, output_dir=str(tmp_path))
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no oracle: every privleak is NaN
        trainer.test(module, datamodule=data(), verbose=False)
    results = module.curve_results
    assert len(results) == 3
    for result in results:
        for attack in ATTACKS:
            assert 0.0 <= result.aggregates[f"mia_{attack}_auc"] <= 1.0, attack
    assert results[0].aggregates["mia_reference_auc"] == 0.5  # theta(0) is the reference: every score is 0
    assert all(not p.requires_grad and p.grad is None for p in module.template.parameters())

    # t = 1 scores as the second endpoint evaluated on its own
    datamodule = data()
    datamodule.setup("test")
    batches = [(split, batch) for split in ("forget", "holdout") for batch in datamodule.eval_dataloader(split)]
    suite.bind(datamodule.tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = evaluate_suite(load_model(ends[1]).eval(), suite, batches)
    for column in ("mia_gradnorm", "mia_reference", "mia_min_k_plus_plus"):
        curve = results[-1].per_sample["forget"][column]
        assert all(math.isfinite(v) for v in curve)
        assert curve == pytest.approx(alone.per_sample["forget"][column], rel=1e-4, abs=1e-6), column
    assert torch.is_grad_enabled()
