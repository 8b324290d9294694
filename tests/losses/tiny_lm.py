"""Shared by the loss tests: a tiny tied-embedding Llama and fixed QA batches on its 32-token vocabulary."""

from __future__ import annotations

import torch
from torch import nn

from mcu_lightning.models import tiny_causal_lm

VOCAB = 32


def tiny_llama(seed: int = 0) -> nn.Module:
    """Two layers, hidden 32, tied embeddings; the same weights for the same seed."""
    return tiny_causal_lm(tokenizer=None, vocab_size=VOCAB, hidden_size=32, intermediate_size=64, seed=seed)


def qa_batch(seed: int) -> dict[str, torch.Tensor]:
    """Four fixed sequences of 8 tokens: a 3-token prompt, then a labelled 5-token answer."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, VOCAB, (4, 8), generator=generator)
    labels = input_ids.clone()
    labels[:, :3] = -100
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "index": torch.arange(4),
    }
