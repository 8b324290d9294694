"""Shared by the loss tests: a tiny tied-embedding Llama and fixed QA batches on its 32-token vocabulary."""

from __future__ import annotations

import math

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


_MEMORISED: dict[int, dict[str, torch.Tensor]] = {}


def memorised_llama(seed: int = 0) -> nn.Module:
    """``tiny_llama(seed)`` fine-tuned until it knows ``qa_batch(1)``'s answers (a tiny stand-in for the quickstart
    base: the forget answers are likely before unlearning); the weights are trained once per session."""
    if seed not in _MEMORISED:
        model, batch = tiny_llama(seed), qa_batch(1)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(40):
            optimizer.zero_grad()
            model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss.backward()
            optimizer.step()
        _MEMORISED[seed] = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    model = tiny_llama(seed)
    model.load_state_dict(_MEMORISED[seed])
    return model


@torch.no_grad()
def answer_probability(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Mean probability of the answer tokens of ``batch`` under ``model`` (teacher-forced)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["labels"][:, 1:].clamp_min(0)[..., None])
    mask = batch["labels"][:, 1:] != -100
    return logp[..., 0].exp()[mask].mean().item()


def one_unlearning_step(loss: nn.Module, lr: float = 1e-2) -> tuple[float, float]:
    """One Adam step of ``loss`` from ``memorised_llama()`` on forget ``qa_batch(1)`` (retain ``qa_batch(2)``, the
    starting model as reference): the forget answers' mean token probability before and after."""
    from mcu_lightning.core.forward import as_policy

    model, forget = memorised_llama(), qa_batch(1)
    reference = memorised_llama().requires_grad_(False).eval()
    before = answer_probability(model, forget)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss.train()
    loss(as_policy(model), {"forget": forget, "retain": qa_batch(2)}, as_policy(reference)).loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in reference.parameters())
    return before, answer_probability(model, forget)


def two_token_example(requires_grad: bool = False) -> tuple[torch.Tensor, dict]:
    """One sample, V = 3, two answer tokens: the logits at position 0 are ``[ln 2, 0, 0]`` and predict token 0
    (p = 1/2, the others 1/4), those at position 1 are uniform and predict token 1 (p = 1/3); position 2 is unused."""
    logits = torch.zeros(1, 3, 3)
    logits[0, 0, 0] = math.log(2.0)
    logits.requires_grad_(requires_grad)
    labels = torch.tensor([[-100, 0, 1]])
    return logits, {"forget": {"input_ids": torch.zeros(1, 3, dtype=torch.long), "labels": labels}}


def label_logit_gradients(loss: nn.Module, reference_logits: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient of ``loss`` on ``two_token_example`` at the two answer tokens' own logits ``[2]``."""
    logits, batch = two_token_example(requires_grad=True)
    reference = None if reference_logits is None else (lambda b: reference_logits)
    loss(lambda b: logits, batch, reference).loss.backward()
    return torch.stack([logits.grad[0, 0, 0], logits.grad[0, 1, 1]])
