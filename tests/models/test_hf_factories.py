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


def test_lora_on_a_fresh_head_trains_the_head_and_curves_carry_it(tmp_path: Path) -> None:
    """A fresh classification head under LoRA is trained in full (modules_to_save), saved with the adapter, and a
    factors-space curve between two such adapters puts it on the curve (endpoints exact); delta space refuses."""
    import pytest

    from mcu_lightning.curves import lora_curve

    config = DistilBertConfig(vocab_size=50, dim=16, hidden_dim=32, n_layers=1, n_heads=2, max_position_embeddings=32)
    DistilBertForMaskedLM(config).save_pretrained(tmp_path / "bert")
    spec = LoraSpec(r=2, target_modules=["q_lin", "v_lin"])
    batch = {"input_ids": torch.randint(0, 50, (4, 7)), "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    folders, logits = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = hf_classifier(str(tmp_path / "bert"), num_labels=3, lora=spec)
        head = {n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
        assert head and all("classifier" in n and "modules_to_save" in n for n in head)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        before = model.get_parameter(sorted(head)[0]).detach().clone()
        for _ in range(3):
            torch.nn.functional.cross_entropy(call_model(model, batch), torch.tensor([0, 1, 2, 0])).backward()
            optimizer.step()
            optimizer.zero_grad()
        assert not torch.equal(before, model.get_parameter(sorted(head)[0]))  # the head learned
        model.save_pretrained(tmp_path / f"adapter{seed}")
        folders.append(tmp_path / f"adapter{seed}")
        logits.append(call_model(model.eval(), batch).detach())
    base = hf_classifier(str(tmp_path / "bert"), num_labels=3)  # a fresh head: the endpoints carry their own
    curve = lora_curve(base, folders)
    assert any("modules_to_save" in name for name in curve.names)
    base.eval()
    for t, expected in ((0.0, logits[0]), (1.0, logits[1])):
        with torch.no_grad():
            assert torch.allclose(curve(t, batch), expected, atol=1e-5)
    with pytest.raises(ValueError, match="use space='factors'"):
        lora_curve(hf_classifier(str(tmp_path / "bert"), num_labels=3), folders, space="delta")
