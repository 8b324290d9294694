"""Membership inference: AUROC of a loss-like score between members and non-members, MUSE's PrivLeak, the
per-sample scores of the Min-K%++, reference-model and gradient-norm attacks (LOSS, zlib and Min-K% are in
:mod:`mcu_lightning.metrics.stats`), and :class:`MembershipInference`, the attacks a suite runs (``QASuite``'s
``mia_<attack>_auc`` and ``privleak``).

Convention (open-unlearning ``mia_auc``): the forget set is labelled 0, the non-members (holdout, test) 1, and the
score is loss-like (higher = less likely a member), so AUC = 1 when the forget data is much more likely than the
non-member data (the model still "remembers" it), and AUC = 0.5 when the attack cannot tell them apart.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import call_model
from mcu_lightning.metrics.oracle import oracle_aggregate
from mcu_lightning.metrics.stats import answer_mask_without_eos, answer_nll, min_k_score, zlib_score

#: open-unlearning's guard in the PrivLeak denominator.
_EPS = 1e-10
#: MIA attacks: aggregate name -> per-sample column (loss-like scores, higher = less likely a member), with
#: open-unlearning's metric names ``mia_loss``, ``mia_zlib``, ``mia_min_k``, ``mia_min_k_plus_plus``, ``mia_gradnorm``,
#: ``mia_reference`` as ``mia_<attack>_auc``.
MIA_ATTACKS: dict[str, str] = {
    "loss": "loss",
    "zlib": "mia_zlib",
    "min_k": "mia_min_k",
    "min_k_plus_plus": "mia_min_k_plus_plus",
    "gradnorm": "mia_gradnorm",
    "reference": "mia_reference",
}
#: The attacks a suite runs by default: every attack that needs nothing beyond the evaluated model's forward pass
#: (GradNorm costs a backward per sample, the reference attack a second model: both are opt-in).
DEFAULT_MIA_ATTACKS: tuple[str, ...] = ("loss", "zlib", "min_k", "min_k_plus_plus")
#: Which attack's AUC ``privleak`` uses: open-unlearning's TOFU config computes privleak from Min-K%.
PRIVLEAK_ATTACK = "min_k"


def mia_auc(forget_scores: Sequence[float] | np.ndarray, nonmember_scores: Sequence[float] | np.ndarray) -> float:
    """AUROC of a loss-like MIA score with the forget set as label 0 and non-members as label 1 (open-unlearning).

    AUC = P(score(non-member) > score(forget)) (ties count one half); NaN if either side is empty.
    """
    forget = np.asarray(forget_scores, dtype=np.float64).reshape(-1)
    other = np.asarray(nonmember_scores, dtype=np.float64).reshape(-1)
    keep_f, keep_o = np.isfinite(forget), np.isfinite(other)
    forget, other = forget[keep_f], other[keep_o]
    if not forget.size or not other.size:
        return math.nan
    labels = np.concatenate([np.zeros(forget.size), np.ones(other.size)])
    return float(roc_auc_score(labels, np.concatenate([forget, other])))


def privleak(auc: float, oracle_auc: float) -> float:
    """PrivLeak (MUSE, Shi et al., 2024; open-unlearning ``privleak``), in percent:

    ((1 - AUC) - (1 - AUC_oracle)) / (1 - AUC_oracle) * 100

    with AUCs in the open-unlearning convention above. 0: the model leaks as much as the oracle (retain-only)
    model; negative (down to -100): the forget set is more detectable than under the oracle (under-unlearning);
    positive: less detectable (over-unlearning).
    """
    score, ref = 1.0 - auc, 1.0 - oracle_auc
    if not (math.isfinite(score) and math.isfinite(ref)):
        return math.nan
    return (score - ref) / (ref + _EPS) * 100.0


# -- the attacks' per-sample scores beyond LOSS, zlib and Min-K% (metrics/stats.py) --------------------------------
def lowest_k_mean(values: Tensor, mask: Tensor, k: float) -> Tensor:
    """Per row, the mean of the ``n_k = max(1, floor(k n))`` smallest of the ``n`` counted ``values`` (``[B, T]``,
    ``mask`` the counted positions); 0 for a row with none (open-unlearning's Min-K% attacks score such a sample 0)."""
    if not 0.0 < k <= 1.0:
        raise InputError(f"min-k fraction must be in (0, 1], got {k}")
    values = torch.where(mask, values.double(), torch.full_like(values, math.inf, dtype=torch.float64))
    lowest, _ = values.sort(dim=1)
    count = mask.sum(dim=1)
    n_k = (count.double() * k).floor().long().clamp_min(1)
    take = (torch.arange(lowest.size(1), device=lowest.device)[None, :] < n_k[:, None]) & (count[:, None] > 0)
    total = torch.where(take, lowest, torch.zeros_like(lowest)).sum(dim=1)
    return torch.where(count > 0, total / n_k, torch.zeros_like(total))


def min_k_plus_plus_score(logits: Tensor, labels: Tensor, k: float = 0.4) -> Tensor:
    """Min-K%++ (Zhang et al., 2025, "Min-K%++: Improved Baseline for Detecting Pre-Training Data from Large
    Language Models", ICLR 2025; open-unlearning ``src/evals/metrics/mia/min_k_plus_plus.py``), per sample:

        s_t = (log p(y_t) - mu_t) / sqrt(sigma_t),   mu_t = E_{v~p_t}[log p_t(v)],
        sigma_t = E_{v~p_t}[(log p_t(v))^2] - mu_t^2 (clamped at 1e-6),
        score = -mean of the k-fraction lowest s_t (``n_k = max(1, floor(k |y|))``)

    over the answer tokens without the EOS, as open-unlearning's ``tokenwise_vocab_logprobs``; higher means less
    likely a member; 0 for a sample without answer tokens. Computed one sample at a time (the ``[L, V]`` float32
    log-probabilities of one row at once).
    """
    mask = answer_mask_without_eos(labels)
    standardised = torch.zeros(mask.shape, dtype=torch.float64, device=logits.device)
    targets = labels[:, 1:].clamp_min(0)
    for row in range(logits.size(0)):
        logp = torch.log_softmax(logits[row, :-1].float(), dim=-1)
        p = logp.exp()
        mu = (p * logp).sum(-1)
        sigma = ((p * logp.square()).sum(-1) - mu.square()).clamp_min(1e-6)
        token = logp.gather(-1, targets[row].unsqueeze(-1)).squeeze(-1)
        standardised[row] = ((token - mu) / sigma.sqrt()).double()
    return -lowest_k_mean(standardised, mask, k)


def reference_score(nll: Tensor, reference_nll: Tensor) -> Tensor:
    """Reference-model attack (Carlini et al., 2021, "Extracting Training Data from Large Language Models"; MUSE;
    open-unlearning ``src/evals/metrics/mia/reference.py``): ``loss_target - loss_reference`` with each loss the
    sample's mean answer NLL (EOS included, the LOSS attack's score); higher means less likely a member."""
    return nll.double() - reference_nll.double()


def gradnorm_score(model: nn.Module, batch: Mapping[str, Any], p: float = 2.0) -> Tensor:
    """Gradient-norm attack (Wang et al., 2024, "Pandora's White-Box", arXiv:2402.17012; open-unlearning
    ``src/evals/metrics/mia/gradnorm.py``), per sample:

        score = mean over parameter tensors W of ||d loss / dW||_p,   loss = -mean_t log p(y_t)

    with ``loss`` over the answer tokens without the EOS, one backward per sample (open-unlearning runs it with
    batch size 1); higher means less likely a member. Every floating-point parameter of ``model`` counts (those
    frozen for evaluation are differentiated for the call and frozen again), each tensor once; a tensor the loss does
    not reach is skipped, as open-unlearning skips ``grad is None``. No ``.grad`` is written. Unlike
    open-unlearning the model stays in eval mode (no dropout), so the score is deterministic. NaN for a sample
    without answer tokens, or a model without parameters (an ensemble).
    """
    if p not in (1, 2, math.inf):
        raise InputError(f"GradNorm's p-norm must be 1, 2 or inf, got {p}")
    params = [param for param in model.parameters() if param.is_floating_point()]
    frozen = [param for param in params if not param.requires_grad]
    mask = answer_mask_without_eos(batch["labels"])
    scores = [math.nan] * mask.size(0)
    if not params:
        return torch.tensor(scores, dtype=torch.float64)
    # a Lightning test runs under inference mode: leave it (and no_grad) for the backward, with ordinary input copies
    with torch.inference_mode(False), torch.enable_grad():
        for param in frozen:
            param.requires_grad_(True)
        try:
            _gradnorm_rows(model, batch, mask, params, p, scores)
        finally:
            for param in frozen:
                param.requires_grad_(False)
    return torch.tensor(scores, dtype=torch.float64)


def _gradnorm_rows(
    model: nn.Module, batch: Mapping[str, Any], mask: Tensor, params: list[nn.Parameter], p: float, scores: list[float]
) -> None:
    """``gradnorm_score``'s per-sample backward passes, writing into ``scores``."""
    for row in range(mask.size(0)):
        if not mask[row].any():
            continue
        inputs = {key: batch[key][row : row + 1].clone() for key in ("input_ids", "attention_mask")}
        logits = call_model(model, inputs)[0, :-1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        token = logp.gather(-1, batch["labels"][row, 1:].clamp_min(0).clone().unsqueeze(-1)).squeeze(-1)
        loss = -token[mask[row].clone()].mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        norms = [grad.detach().float().norm(p=p) for grad in grads if grad is not None]
        scores[row] = torch.stack(norms).mean().item() if norms else math.nan


class MembershipInference:
    """The attacks of :data:`MIA_ATTACKS` a suite runs on its (members, non-members) splits: their per-sample scores
    of a batch (:meth:`scores`, :meth:`gradnorm`) and, over the two splits, ``mia_<attack>_auc`` with its privleak
    against the oracle's AUC of the same attack (:meth:`aggregates`).

    Args:
        attacks: the attacks run (keys of ``MIA_ATTACKS``; ``loss`` reads the suite's ``loss`` column).
        min_k: the fraction of lowest-scoring tokens of the Min-K% and Min-K%++ attacks (TOFU config: 0.4).
        gradnorm_p: the p-norm of the GradNorm attack (1, 2 or inf; TOFU config: 2).
        reference_model: the reference attack's model folder; required when ``attacks`` has ``reference``.
    """

    def __init__(
        self,
        attacks: Sequence[str] = DEFAULT_MIA_ATTACKS,
        min_k: float = 0.4,
        gradnorm_p: float = 2.0,
        reference_model: str | None = None,
    ) -> None:
        unknown = [attack for attack in attacks if attack not in MIA_ATTACKS]
        if unknown:
            raise InputError(f"unknown MIA attacks {unknown}; known: {list(MIA_ATTACKS)}")
        if ("reference" in attacks) != (reference_model is not None):
            raise InputError(
                "the reference attack needs both 'reference' in mia_attacks and reference_model (a model folder; in "
                f"a study 'oracle' or 'base'), got mia_attacks={list(attacks)}, reference_model={reference_model!r}"
            )
        if gradnorm_p not in (1, 2, math.inf):
            raise InputError(f"gradnorm_p must be 1, 2 or inf, got {gradnorm_p}")
        self.attacks = tuple(dict.fromkeys(attacks))
        self.min_k = min_k
        self.gradnorm_p = gradnorm_p
        self.reference_model = reference_model
        # (source, model), held by this plain object: never a submodule (state_dict, .to) of the suite
        self._reference: tuple[Any, nn.Module] | None = None

    def scores(
        self,
        model: nn.Module,
        inputs: Mapping[str, Tensor],
        logits: Tensor,
        labels: Tensor,
        nll: Tensor,
        answer_texts: Callable[[], list[str]],
    ) -> dict[str, Tensor]:
        """The per-sample columns of the forward-pass attacks from the batch's ``logits`` and answer ``nll`` (the
        LOSS attack's score, stored by the suite as ``loss``); ``answer_texts()`` gives the zlib attack its texts."""
        values = {}
        if "min_k" in self.attacks:
            values["mia_min_k"] = min_k_score(logits, labels, self.min_k)
        if "min_k_plus_plus" in self.attacks:
            values["mia_min_k_plus_plus"] = min_k_plus_plus_score(logits, labels, self.min_k)
        if "zlib" in self.attacks:
            values["mia_zlib"] = zlib_score(nll, answer_texts())
        if "reference" in self.attacks:
            reference = self.reference_network(model)
            reference_nll, _ = answer_nll(call_model(reference, inputs), labels)
            values["mia_reference"] = reference_score(nll, reference_nll)
        return values

    def gradnorm(self, model: nn.Module, batch: Mapping[str, Any], device: torch.device) -> dict[str, Tensor]:
        """The GradNorm attack's column on ``device`` when it is run (a backward per sample), else nothing."""
        if "gradnorm" not in self.attacks:
            return {}
        return {"mia_gradnorm": gradnorm_score(model, batch, self.gradnorm_p).to(device)}

    def aggregates(
        self, members: Mapping[str, Tensor], others: Mapping[str, Tensor], oracle: Any, self_oracle: bool
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Per attack ``mia_<attack>_auc`` and its privleak (``privleak`` for :data:`PRIVLEAK_ATTACK`, else
        ``privleak_<attack>``) against the AUC the (loaded) ``oracle`` reports (``self_oracle``: the model evaluated
        is the oracle, so its own AUC); and each AUC's target, the oracle's AUC (0.5 without one)."""
        out: dict[str, float] = {}
        targets: dict[str, float] = {}
        for attack in self.attacks:
            column = MIA_ATTACKS[attack]
            auc = mia_auc(members[column].cpu().numpy(), others[column].cpu().numpy())
            out[f"mia_{attack}_auc"] = auc
            oracle_auc = auc if self_oracle else oracle_aggregate(oracle, f"mia_{attack}_auc")
            known = oracle_auc is not None and math.isfinite(oracle_auc)
            targets[f"mia_{attack}_auc"] = float(oracle_auc) if known else 0.5
            name = "privleak" if attack == PRIVLEAK_ATTACK else f"privleak_{attack}"
            if oracle_auc is None:
                warnings.warn(
                    f"{name} needs the oracle's mia_{attack}_auc: pass suite.oracle=<oracle test JSON> "
                    "(the retain-only model's `mcu test` writes it); reporting NaN",
                    stacklevel=4,
                )
                out[name] = math.nan
            else:
                out[name] = privleak(auc, oracle_auc)
        return out, targets

    def set_reference(self, model: nn.Module) -> None:
        """Use ``model`` as the reference attack's model (instead of loading ``reference_model``)."""
        self._reference = (self.reference_model, model.eval())

    def reference_network(self, model: nn.Module) -> nn.Module:
        """The reference attack's model, loaded from ``reference_model`` once, on ``model``'s device and dtype."""
        if self._reference is None or self._reference[0] != self.reference_model:
            from mcu_lightning.models import load_model  # transformers: imported only when a reference is loaded

            if self.reference_model in ("oracle", "base"):
                raise InputError(
                    f"reference_model '{self.reference_model}' names a study node; outside a study give the model "
                    "folder (e.g. runs/quickstart/oracle/model)"
                )
            self._reference = (self.reference_model, load_model(self.reference_model).eval().requires_grad_(False))
        reference = self._reference[1]
        tensor = next(iter([*model.parameters(), *model.buffers()]), None)
        if tensor is not None:
            reference.to(tensor.device)
            if tensor.is_floating_point():
                reference.to(tensor.dtype)
        return reference
