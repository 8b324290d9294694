"""KL(p_ref || p_theta) to the starting model on the answer tokens: the KL retain regulariser (TOFU, Maini et al.,
2024; open-unlearning's ``retain_loss_type: KL``), here restricted to the answer tokens; :func:`kl_all_positions`
is open-unlearning's own reduction, used under ``compat: open_unlearning`` (:mod:`mcu_lightning.core.compat`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mcu_lightning.core.per_sample import IGNORE_INDEX


def kl_to_reference(logits: Tensor, ref_logits: Tensor, labels: Tensor) -> Tensor:
    """KL(p_ref || p_theta) averaged over the answer tokens of the batch.

    Causal LM (``[B, L, V]``): ``sum_{i,t in answer} sum_v p_ref log(p_ref / p_theta) / #answer tokens`` on the
    shifted positions (logits at t predict token t+1, labels != -100). Classification (``[B, C]``): the
    per-sample KL averaged over the batch.
    """
    if logits.dim() == 2:
        log_p = F.log_softmax(logits.float(), dim=-1)
        log_ref = F.log_softmax(ref_logits.float(), dim=-1)
        return F.kl_div(log_p, log_ref, log_target=True, reduction="none").sum(-1).mean()
    mask = labels[:, 1:] != IGNORE_INDEX
    log_p = F.log_softmax(logits[:, :-1].float(), dim=-1)
    log_ref = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    kl = F.kl_div(log_p, log_ref, log_target=True, reduction="none").sum(-1)
    return (kl * mask).sum() / mask.sum().clamp_min(1)


def kl_all_positions(logits: Tensor, ref_logits: Tensor) -> Tensor:
    """open-unlearning's KL retain term (``compute_kl_divergence`` in ``src/trainer/utils.py``):

    ``sum_{i, t} sum_v p_ref log(p_ref / p_theta) / (B * L)`` over every position of ``[B, L, V]`` logits, unshifted,
    prompt and padding included (``F.kl_div(..., reduction="batchmean")`` over ``logits.view(-1, V)``).
    Classification logits ``[B, C]`` give the per-sample KL averaged over the batch, as :func:`kl_to_reference`.
    """
    vocab = logits.shape[-1]
    log_p = F.log_softmax(logits.float(), dim=-1).reshape(-1, vocab)
    log_ref = F.log_softmax(ref_logits.float(), dim=-1).reshape(-1, vocab)
    return F.kl_div(log_p, log_ref, reduction="batchmean", log_target=True)
