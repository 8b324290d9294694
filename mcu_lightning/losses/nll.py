"""The plain likelihood objective, and the per-sample shares of a token-mean NLL.

``NLL(split="train")`` is fine-tuning (the base model on ``full``, the oracle on ``retain``);
``NLL(split="retain")`` is the retain-only objective a curve can be trained with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from mcu_lightning.core.forward import Policy, logits_of
from mcu_lightning.core.per_sample import batch_nll, sequence_nll
from mcu_lightning.losses.base import LossOutput, UnlearningLoss


def require_split(batch: Mapping[str, Any], split: str, owner: str) -> Mapping[str, Any]:
    """The sub-batch ``batch[split]``, or an error naming the loss, the missing key and the keys present."""
    if split not in batch:
        raise KeyError(
            f"{owner} needs a '{split}' sub-batch but the batch has {sorted(batch)}; "
            f"the data module must yield {{'{split}': ...}} batches for this loss"
        )
    return batch[split]


def policy_logits(policy: Policy, sub_batch: Mapping[str, Any]) -> Tensor:
    """The logits of ``policy`` on a sub-batch (a policy may return a tensor or a ``ModelOutput``)."""
    return logits_of(policy(sub_batch))


def nll_shares(logits: Tensor, labels: Tensor) -> Tensor:
    """Each sample's share of the batch token-mean NLL, scaled so that ``mean(shares) == batch_nll``.

    ``share_i = B * S_i / sum_j |y_j|`` with ``S_i`` the summed answer NLL of sample i (``NLL(x)``,
    :func:`~mcu_lightning.core.per_sample.batch_nll`, is the token mean over the whole batch, Hugging Face's
    causal-LM loss). For classification
    every sample has one "token", so ``share_i`` is the sample's cross-entropy.
    """
    total, count = sequence_nll(logits, labels)
    return total * total.numel() / count.sum().clamp_min(1)


class NLL(UnlearningLoss):
    """Token-mean cross-entropy on the answer tokens of sub-batch ``split`` (plain CE for classifiers).

    ``split="train"`` for fine-tuning batches ``{"train": ...}``, ``split="retain"`` for the retain-only
    objective on unlearning batches. Logs ``f"{on}_loss"``.
    """

    def __init__(self, split: str = "retain") -> None:
        super().__init__()
        self.split = split

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        sub_batch = require_split(batch, self.split, type(self).__name__)
        loss = batch_nll(policy_logits(policy, sub_batch), sub_batch["labels"])
        return LossOutput(loss=loss, logs={f"{self.split}_loss": loss.detach()})

    def extra_repr(self) -> str:
        return f"split={self.split!r}"
