"""Model factories and endpoint I/O."""

from mcu_lightning.core.forward import Policy, as_policy, call_model, logits_of, model_inputs
from mcu_lightning.models.hf import LoraSpec, apply_lora, causal_lm, hf_classifier, load_tokenizer, tiny_causal_lm
from mcu_lightning.models.io import load_model, load_state_dict, save_model
from mcu_lightning.models.memory import (
    LLAMA_3,
    MemoryEstimate,
    estimate_memory,
    lora_param_count,
    memory_table,
    param_count,
)
from mcu_lightning.models.small import MLP, SmallConvNet

__all__ = [
    "LLAMA_3",
    "MLP",
    "LoraSpec",
    "MemoryEstimate",
    "Policy",
    "SmallConvNet",
    "apply_lora",
    "as_policy",
    "call_model",
    "causal_lm",
    "estimate_memory",
    "hf_classifier",
    "load_model",
    "load_state_dict",
    "load_tokenizer",
    "logits_of",
    "lora_param_count",
    "memory_table",
    "model_inputs",
    "param_count",
    "save_model",
    "tiny_causal_lm",
]
