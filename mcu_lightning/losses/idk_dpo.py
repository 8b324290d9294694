"""IdkDPO: DPO (Rafailov et al., 2023, "Direct Preference Optimization") with an "I don't know" answer
as the preferred (winning) answer and the forget answer as the rejected (losing) one; the IDK variant of
TOFU (Maini et al., 2024) and of NPO's baselines (Zhang et al., 2024).

Per sample, the published DPO loss (Rafailov et al., 2023, Eq. 7):
``-logsigmoid(beta * ((log pi_theta(y_w|x) - log pi_ref(y_w|x)) - (log pi_theta(y_l|x) - log pi_ref(y_l|x))))``
with summed answer log-probabilities. open-unlearning's ``compute_dpo_loss`` (``src/trainer/utils.py``) multiplies
it by ``2 / beta``; the default ``gamma=None`` does the same, so the defaults equal its shipped
``configs/trainer/DPO.yaml`` (``beta: 0.1, alpha: 1, gamma: 1``, retain NLL): at ``beta = 0.1`` the preference
term weighs 20 times the retain term. Without a retain term the factor only rescales the learning rate; with one it
sets the balance of the two, so ``gamma = 1`` (the published DPO loss, 20 times less forgetting pressure at the
same ``alpha``) is a different objective, not a reparametrisation.

The winner sub-batch: a forget sub-batch may carry precomputed ``idk_input_ids``, ``idk_attention_mask`` and
``idk_labels``; otherwise the loss builds it from the forget prompt (the tokens before the first labelled
one) + a tokenized answer from ``idk_answers`` + EOS, choosing answer ``index % len(idk_answers)`` per
sample (``index`` from the batch, else the position). Building needs a tokenizer: every module (endpoint or curve)
calls ``loss.bind(tokenizer)`` with the data module's tokenizer at ``setup``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.core.per_sample import IGNORE_INDEX, sequence_logprob
from mcu_lightning.losses.base import LossOutput
from mcu_lightning.losses.forget_retain import ForgetRetainLoss
from mcu_lightning.losses.nll import policy_logits, require_split
from mcu_lightning.losses.random_label import join_prompt_answer, split_prompt_answer

#: Refusals used as the preferred answer, in the spirit of TOFU's ``idontknow.jsonl``.
IDK_ANSWERS: tuple[str, ...] = (
    "I don't know.",
    "I'm not sure.",
    "I have no idea.",
    "I don't have that information.",
    "I'm afraid I can't answer that.",
    "That is beyond what I know.",
    "I cannot say.",
    "I'm not aware of that.",
    "I don't have any knowledge about that.",
    "I am unable to answer this question.",
    "Sorry, I do not know the answer.",
    "I have no information on that topic.",
    "That's not something I know about.",
    "I couldn't tell you.",
    "I'm not familiar with that.",
    "I lack the information to answer.",
    "I can't recall anything about that.",
    "Unfortunately, I don't know.",
    "I have never heard of that.",
    "My knowledge does not cover that.",
)

IDK_KEYS: tuple[str, str, str] = ("idk_input_ids", "idk_attention_mask", "idk_labels")


def dpo_loss(logp_w: Tensor, logp_l: Tensor, ref_w: Tensor, ref_l: Tensor, beta: float = 0.1) -> Tensor:
    """DPO (Rafailov et al., 2023), per sample: ``-logsigmoid(beta * ((logp_w - ref_w) - (logp_l - ref_l)))``."""
    return -F.logsigmoid(beta * ((logp_w - ref_w) - (logp_l - ref_l)))


def _token_mean_nll(logp: Tensor, labels: Tensor) -> Tensor:
    """``NLL(x)``, the batch token mean, from the summed answer log-probs of a causal-LM batch."""
    return -logp.sum() / (labels[:, 1:] != IGNORE_INDEX).sum().clamp_min(1)


class IdkDPO(ForgetRetainLoss):
    """``gamma * mean_i dpo_loss(idk answer > forget answer) + alpha * retain term``; needs a reference.

    With the defaults this is open-unlearning's ``DPO`` trainer on an IDK alternate: ``gamma = 2 / beta``.

    Args:
        beta: DPO inverse temperature (0.1).
        alpha: weight of the retain term (skipped when the batch has no retain part).
        idk_answers: the refusals to choose from (default ``IDK_ANSWERS``).
        retain_loss: ``"nll"``, ``"kl"`` or None.
        gamma: weight of the forget (preference) term; None (default) is ``2 / beta``, open-unlearning's scale.

    Logs ``forget_loss``, ``retain_loss``, ``dpo_margin`` (the mean reward margin divided by beta) and
    ``forget_nll``/``idk_nll`` (token-mean NLL of the loser and winner answers).
    """

    needs_reference: bool = True
    supports_classification = False

    def __init__(
        self,
        beta: float = 0.1,
        alpha: float = 1.0,
        idk_answers: list[str] | None = None,
        retain_loss: str | None = "nll",
        gamma: float | None = None,
    ) -> None:
        if beta <= 0:
            raise InputError(f"IdkDPO: beta must be positive, got {beta}")
        super().__init__(2.0 / beta if gamma is None else gamma, alpha, retain_loss)
        self.beta = beta
        self.idk_answers = list(idk_answers) if idk_answers is not None else list(IDK_ANSWERS)
        if not self.idk_answers:
            raise InputError("IdkDPO: idk_answers is empty; give at least one answer or leave it None")
        self._answer_ids: list[Tensor] | None = None
        self._pad_id = 0

    def bind(self, tokenizer: Any) -> None:
        """Tokenize the idk answers once (no special tokens, EOS appended when the tokenizer has one)."""
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self._answer_ids = [
            torch.tensor(tokenizer(answer, add_special_tokens=False)["input_ids"] + eos, dtype=torch.long)
            for answer in self.idk_answers
        ]
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def idk_batch(self, forget: Mapping[str, Any]) -> dict[str, Tensor]:
        """The winner sub-batch: the forget prompts with an idk answer each (precomputed keys win)."""
        if all(key in forget for key in IDK_KEYS):
            return {key.removeprefix("idk_"): forget[key] for key in IDK_KEYS}
        if self._answer_ids is None:
            raise RuntimeError(
                "IdkDPO has no tokenizer to build the 'I don't know' answers: call `loss.bind(tokenizer)` "
                f"before training, or give forget batches the keys {list(IDK_KEYS)}"
            )
        pairs = split_prompt_answer(forget)
        index = forget.get("index")
        picks = index.tolist() if index is not None else range(len(pairs))
        answers = [self._answer_ids[int(k) % len(self._answer_ids)] for k in picks]
        return join_prompt_answer([prompt for prompt, _ in pairs], answers, self._pad_id)

    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        reference = self.require_reference(reference)
        forget = require_split(batch, "forget", type(self).__name__)
        if "input_ids" not in forget:
            raise TypeError("IdkDPO needs causal-LM batches (input_ids, labels); it has no meaning for classifiers")
        idk = self.idk_batch(forget)
        logp_l = sequence_logprob(policy_logits(policy, forget), forget["labels"])
        logp_w = sequence_logprob(policy_logits(policy, idk), idk["labels"])
        with torch.no_grad():
            ref_l = sequence_logprob(policy_logits(reference, forget), forget["labels"])
            ref_w = sequence_logprob(policy_logits(reference, idk), idk["labels"])
        per_sample = dpo_loss(logp_w, logp_l, ref_w, ref_l, self.beta)

        logs = {
            "dpo_margin": ((logp_w - ref_w) - (logp_l - ref_l)).mean(),
            "forget_nll": _token_mean_nll(logp_l, forget["labels"]),
            "idk_nll": _token_mean_nll(logp_w, idk["labels"]),
        }
        return self.combine(policy, batch, reference, per_sample, logs)

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, alpha={self.alpha}, gamma={self.gamma}, retain_loss={self.retain_loss!r}, "
            f"idk_answers=<{len(self.idk_answers)}>"
        )
