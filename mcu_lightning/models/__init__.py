"""Model factories and endpoint I/O."""

from mcu_lightning.models.forward import Policy, as_policy, call_model, logits_of, model_inputs
from mcu_lightning.models.hf import LoraSpec, apply_lora, causal_lm, load_tokenizer, tiny_causal_lm
from mcu_lightning.models.io import load_model, load_state_dict, save_model
from mcu_lightning.models.small import MLP, SmallConvNet

__all__ = [
    "MLP",
    "LoraSpec",
    "Policy",
    "SmallConvNet",
    "apply_lora",
    "as_policy",
    "call_model",
    "causal_lm",
    "load_model",
    "load_state_dict",
    "load_tokenizer",
    "logits_of",
    "model_inputs",
    "save_model",
    "tiny_causal_lm",
]
