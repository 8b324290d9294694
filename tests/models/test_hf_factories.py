"""Hugging Face factories on local folders built from configs (the same code paths load Hub names)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import DistilBertConfig, DistilBertForMaskedLM, ResNetConfig, ResNetForImageClassification

from mcu_lightning.models import call_model, causal_lm, hf_classifier, save_model, tiny_causal_lm
from mcu_lightning.models.hf import LoraSpec


def test_image_classifier_head_is_resized(tmp_path: Path) -> None:
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=1000)
    ResNetForImageClassification(config).save_pretrained(tmp_path / "resnet")
    model = hf_classifier(str(tmp_path / "resnet"), num_labels=7)
    assert isinstance(model, ResNetForImageClassification)
    logits = call_model(model.eval(), {"inputs": torch.randn(2, 3, 32, 32), "labels": torch.zeros(2)})
    assert logits.shape == (2, 7)


def test_text_classifier_from_a_pretraining_checkpoint(tmp_path: Path) -> None:
    config = DistilBertConfig(vocab_size=50, dim=16, hidden_dim=32, n_layers=1, n_heads=2, max_position_embeddings=32)
    DistilBertForMaskedLM(config).save_pretrained(tmp_path / "bert")
    model = hf_classifier(str(tmp_path / "bert"), num_labels=2, lora=LoraSpec(r=2, target_modules=["q_lin", "v_lin"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    logits = call_model(model, {"input_ids": torch.randint(0, 50, (3, 9)), "attention_mask": torch.ones(3, 9)})
    assert logits.shape == (3, 2)


def test_causal_lm_loads_a_folder_in_a_dtype(tmp_path: Path) -> None:
    folder = save_model(
        tiny_causal_lm(tokenizer=None, vocab_size=40, hidden_size=16, intermediate_size=32), tmp_path / "lm"
    )
    model = causal_lm(str(folder), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
