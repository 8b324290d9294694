"""Every QA ``test`` writes open-unlearning's TOFU_EVAL.json and TOFU_SUMMARY.json next to test_metrics.json."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from mcu_lightning.data import QADataModule
from mcu_lightning.losses import GradDiff
from mcu_lightning.metrics import QASuite
from mcu_lightning.models import tiny_causal_lm
from mcu_lightning.modules import UnlearningModule


def test_qa_test_writes_open_unlearning_files(tmp_path: Path) -> None:
    seed_everything(0)
    model = tiny_causal_lm(tokenizer="fictitious", hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    module = UnlearningModule(
        model, GradDiff(), optimizer=partial(torch.optim.AdamW, lr=1e-3), suite=QASuite(max_new_tokens=4),
        output_dir=str(tmp_path),
    )  # fmt: skip
    data = QADataModule(forget_split="forget10", num_people=20, max_length=48, eval_batch_size=64)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning):  # no oracle: forget quality and privleak are NaN
        trainer.test(module, datamodule=data)
    ours = json.loads((tmp_path / "test_metrics.json").read_text())
    theirs = json.loads((tmp_path / "TOFU_EVAL.json").read_text())
    summary = json.loads((tmp_path / "TOFU_SUMMARY.json").read_text())
    forget = ours["per_sample"]["forget"]
    scores = [theirs["forget_truth_ratio"]["value_by_index"][str(int(i))]["score"] for i in forget["index"]]
    assert scores == forget["truth_ratio"]
    assert theirs["forget_Q_A_ROUGE"]["agg_value"] == ours["aggregates"]["forget/rouge"]
    assert summary["model_utility"] == ours["aggregates"]["model_utility"]
    # no oracle: null in TOFU_EVAL.json, left out of the summary (open-unlearning's summarize drops null aggregates)
    assert theirs["forget_quality"] == {"agg_value": None}
    assert "forget_quality" not in summary and "forget_truth_ratio" in summary
