"""QASuite: the TOFU evaluation (Maini et al., 2024) of a causal LM, as open-unlearning computes it.

Per split (batches in the QA evaluation format of docs/internals.md): ``loss`` (mean answer NLL, the curve's barrier
loss), ``prob``, ``rouge``, ``truth_ratio``, ``extraction_strength``, ``exact_memorization``. Across splits:
``forget_quality`` (KS test against the oracle's forget truth ratios), ``model_utility`` (harmonic mean),
``mia_<attack>_auc`` between forget and holdout for each attack of ``mia_attacks`` (LOSS, zlib, Min-K%, Min-K%++,
GradNorm, reference-model) and ``privleak`` (Min-K%) / ``privleak_<attack>`` (against the oracle's AUCs).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from mcu_lightning.core.compat import OPEN_UNLEARNING
from mcu_lightning.core.direction import toward
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import call_model, kv_cache_off
from mcu_lightning.core.per_sample import IGNORE_INDEX
from mcu_lightning.metrics.forget_quality import oracle_forget_quality
from mcu_lightning.metrics.mia import DEFAULT_MIA_ATTACKS, MIA_ATTACKS, MembershipInference
from mcu_lightning.metrics.model_utility import model_utility
from mcu_lightning.metrics.open_unlearning import ROUGE_COLUMNS, write_open_unlearning
from mcu_lightning.metrics.oracle import ORACLE_SELF, OracleSource, load_oracle
from mcu_lightning.metrics.rouge import rouge_scores
from mcu_lightning.metrics.stats import answer_nll, exact_memorization, extraction_strength, normalised_probability
from mcu_lightning.metrics.suite import ROLES, Direction, EvalResult, MetricSuite, batch_index, nanmean
from mcu_lightning.metrics.truth_ratio import TR_AGGREGATORS, truth_ratio

_SPLIT_OPTIONS = {"normalised", "truth_ratio", "role"}
#: Memorisation metrics: on the forget split lower is better (the model should no longer know the answers).
_MEMORY_METRICS = {"prob", "rouge", "extraction_strength", "exact_memorization"}


class QASuite(MetricSuite):
    """TOFU metrics for a Hugging Face causal LM (anything with ``forward(input_ids, attention_mask)`` and, for ROUGE,
    ``generate``), at one model or one point of a curve.

    Args:
        splits: the splits to evaluate (others are skipped); ``None``: every split the data gives. A mapping gives
            per-split options: ``{"real_authors": {"normalised": true}, "forget": {"truth_ratio": "closer_to_1"}}``;
            ``role`` (``forget``/``retain``/``holdout``/``utility``) states what a split is for (default: the
            ``forget_splits`` are forget, the MIA non-members holdout, ``retain`` retain, the others utility). The role
            alone decides each metric's direction; ``truth_ratio`` only picks the aggregate (default: ``closer_to_1``
            on forget splits, ``true_better`` elsewhere).
        max_new_tokens: greedy generation length for ROUGE (open-unlearning's TOFU config uses 200).
        generation_batch_size: prompts per ``generate`` call (``None``: the whole batch).
        oracle: the oracle's test JSON (``EvalResult.to_json``) or open-unlearning's ``TOFU_EVAL.json`` of the
            retain model, for ``forget_quality`` and ``privleak``; ``"self"`` when the model evaluated is the oracle
            (its forget quality is then 1 and its privleak 0, by definition).
        mia_splits: (members, non-members) of the MIA attacks.
        rouge: generate and score ROUGE-L recall (off: no ``generate`` needed).
        normalised_splits: splits whose ``prob`` is P(a) / (P(a) + sum_k P(perturbed_k)).
        forget_splits: the splits whose role is ``forget`` (their truth ratio aggregates as mean(min(TR, 1/TR)) unless
            a split's ``truth_ratio`` option says otherwise; others: mean(max(0, 1 - TR))).
        quality_split: the evaluation split whose truth ratios give forget quality (the data module's
            ``forget_split`` is the TOFU config it comes from, e.g. ``forget10``).
        min_k: the fraction of lowest-scoring tokens of the Min-K% and Min-K%++ attacks (TOFU config: 0.4).
        mia_attacks: the attacks run on ``mia_splits`` (keys of ``MIA_ATTACKS``); each gives ``mia_<attack>_auc`` and
            a privleak against the oracle's AUC of the same attack.
        gradnorm_p: the p-norm of the GradNorm attack (1, 2 or inf; TOFU config: 2).
        reference_model: the reference attack's model folder (the oracle's or the base's: in a study ``oracle`` or
            ``base`` names that node's model); required when ``mia_attacks`` has ``reference``.
    """

    columns = (
        "loss",
        "prob",
        "truth_ratio",
        "rouge",
        "extraction_strength",
        "exact_memorization",
        "mia_zlib",
        "mia_min_k",
        "para_loss",
        "rouge1_recall",
        "rougeL_f1",
        "mia_min_k_plus_plus",
        "mia_gradnorm",
        "mia_reference",
    )

    def __init__(
        self,
        splits: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
        max_new_tokens: int = 32,
        generation_batch_size: int | None = None,
        oracle: OracleSource | None = None,
        mia_splits: tuple[str, str] = ("forget", "holdout"),
        rouge: bool = True,
        normalised_splits: Sequence[str] = ("real_authors", "world_facts"),
        forget_splits: Sequence[str] = ("forget",),
        quality_split: str = "forget",
        min_k: float = 0.4,
        mia_attacks: Sequence[str] = DEFAULT_MIA_ATTACKS,
        gradnorm_p: float = 2.0,
        reference_model: str | None = None,
    ) -> None:
        super().__init__()
        if len(mia_splits) != 2:
            raise InputError(f"mia_splits must name (members, non-members), got {mia_splits}")
        self.mia = MembershipInference(mia_attacks, min_k, gradnorm_p, reference_model)
        self.max_new_tokens = max_new_tokens
        self.generation_batch_size = generation_batch_size
        self.oracle = oracle
        self.mia_splits = tuple(mia_splits)
        self.rouge = rouge
        self.quality_split = quality_split
        self.split_names = None if splits is None else list(splits)
        self.normalised = set(normalised_splits)
        self.roles = {split: "forget" for split in forget_splits}
        self.roles.setdefault(self.mia_splits[1], "holdout")
        self.tr_aggregator: dict[str, str] = {}
        for split, options in splits.items() if isinstance(splits, Mapping) else ():
            unknown = set(options) - _SPLIT_OPTIONS
            if unknown:
                known = sorted(_SPLIT_OPTIONS)
                raise InputError(f"unknown options {sorted(unknown)} for split '{split}'; known: {known}")
            if "normalised" in options:
                (self.normalised.add if options["normalised"] else self.normalised.discard)(split)
            if "truth_ratio" in options:
                if options["truth_ratio"] not in TR_AGGREGATORS:
                    raise InputError(f"truth_ratio of split '{split}' must be one of {sorted(TR_AGGREGATORS)}")
                self.tr_aggregator[split] = options["truth_ratio"]
            if "role" in options:
                if options["role"] not in ROLES:
                    raise InputError(f"role of split '{split}' must be one of {list(ROLES)}, got {options['role']!r}")
                self.roles[split] = options["role"]
        self._oracle_cache: tuple[Any, Any] | None = None
        #: ``mia_<attack>_auc`` -> the AUC it is ranked against (the oracle's, or 0.5), set by each ``compute``.
        self.mia_targets: dict[str, float] = {}

    # -- update: per-sample statistics of one batch -----------------------------------------------------
    def update(self, model: nn.Module, split: str, batch: Mapping[str, Any]) -> None:
        self.update_many(model, [(split, batch)])

    @torch.no_grad()
    def update_many(
        self,
        model: nn.Module,
        batches: Sequence[tuple[str, Mapping[str, Any]]],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Score every batch, then generate for all their prompts together (``generation_batch_size`` at a time)
        instead of batch by batch: a curve's test evaluates every split at every t, and each ``generate`` call
        costs ``max_new_tokens`` decoding steps of Python whatever its batch size. ``progress(done, total)`` counts
        the scored batches, then the generation as one more unit."""
        chosen = [(s, b) for s, b in batches if self.split_names is None or s in self.split_names]
        total = len(chosen) + (1 if self.rouge and chosen else 0)
        scored = []
        for split, batch in chosen:
            index = batch_index(split, batch)
            with kv_cache_off(model):  # teacher-forced forwards build no cache; generate keeps its own
                scored.append((split, batch, index, self._score(model, split, batch)))
            if progress is not None:
                progress(len(scored), total)
        if self.rouge and scored:
            texts = self._generate(model, [prompt for _, batch, _, _ in scored for prompt in _prompts(batch)])
            if progress is not None:
                progress(total, total)
            start = 0
            for split, batch, index, values in scored:
                generations, start = texts[start : start + index.numel()], start + index.numel()
                references = self._references(batch)
                rouge = rouge_scores(generations, references)
                for column, name in ROUGE_COLUMNS.items():
                    values[column] = torch.tensor([row[name] for row in rouge], dtype=torch.float64)
                inputs = self.tokenizer.batch_decode([p.tolist() for p in _prompts(batch)], skip_special_tokens=True)
                self.record(split, index, {"generation": generations, "ground_truth": references, "input": inputs})
        for split, _, index, values in scored:
            perturbed = values.pop("perturbed_loss", None)
            if perturbed is not None:  # [B, K]: the K wrong answers' losses, kept per sample (open-unlearning's PERT)
                self.record(split, index, {"perturbed_loss": perturbed.tolist()})
            self.store(split, index.device).update(index, values)

    def _score(self, model: nn.Module, split: str, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Every statistic that comes from teacher-forced forwards (all but ROUGE)."""
        labels = batch["labels"]
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        logits = call_model(model, inputs)
        nll, _ = answer_nll(logits, labels)
        values = {
            "loss": nll,
            "extraction_strength": extraction_strength(logits, labels),
            "exact_memorization": exact_memorization(logits, labels),
        }
        if split in self.mia_splits:
            values.update(self.mia.scores(model, inputs, logits, labels, nll, lambda: self._answer_texts(batch)))
        del logits
        if split in self.mia_splits:
            values.update(self.mia.gradnorm(model, batch, nll.device))

        perturbed = self._option_nll(model, batch, "perturbed") if "perturbed_input_ids" in batch else None
        if perturbed is not None:
            # Splits without paraphrases (real authors, world facts) compare against the true answer, as TOFU does.
            correct = self._option_nll(model, batch, "paraphrased") if "paraphrased_input_ids" in batch else nll
            values["truth_ratio"] = truth_ratio(correct, perturbed)
            values["perturbed_loss"] = perturbed
            if "paraphrased_input_ids" in batch:
                values["para_loss"] = correct
        if split in self.normalised:
            if perturbed is None:
                raise KeyError(
                    f"split '{split}' reports the normalised probability P(a) / (P(a) + sum P(perturbed)) but its "
                    "batch has no 'perturbed_input_ids'; give the split perturbed answers or drop it from "
                    "normalised_splits"
                )
            values["prob"] = normalised_probability(nll, perturbed)
        else:
            values["prob"] = torch.exp(-nll)
        return values

    def _option_nll(self, model: nn.Module, batch: Mapping[str, Any], prefix: str) -> Tensor:
        """Mean answer NLL of the paraphrased ``[B]`` or perturbed ``[B, K]`` answers (NaN for empty options)."""
        ids, mask, labels = (batch[f"{prefix}_{key}"] for key in ("input_ids", "attention_mask", "labels"))
        shape = ids.shape[:-1]
        flat = {"input_ids": ids.reshape(-1, ids.size(-1)), "attention_mask": mask.reshape(-1, mask.size(-1))}
        nll, _ = answer_nll(call_model(model, flat), labels.reshape(-1, labels.size(-1)))
        return nll.view(shape)

    def _generate(self, model: nn.Module, prompts: Sequence[Tensor]) -> list[str]:
        """Greedy generations from unpadded prompts (left-padded ``generation_batch_size`` at a time), new tokens
        only, special tokens skipped."""
        if not callable(getattr(model, "generate", None)):
            raise TypeError(
                f"ROUGE needs a model with .generate (a Hugging Face causal LM), got {type(model).__name__}; "
                "pass rouge=False to the suite for other models"
            )
        tokenizer = self._require_tokenizer("decode generations for ROUGE")
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        step = self.generation_batch_size or max(1, len(prompts))
        texts: list[str] = []
        for start in range(0, len(prompts), step):
            chunk = list(prompts[start : start + step])
            input_ids = pad_sequence(chunk, batch_first=True, padding_value=pad_id, padding_side="left")
            if self.compat == OPEN_UNLEARNING:  # its collator's mask: every pad-id token hidden, eos = pad included
                attention_mask = (input_ids != pad_id).long()
            else:
                ones = [torch.ones_like(prompt) for prompt in chunk]
                attention_mask = pad_sequence(ones, batch_first=True, padding_value=0, padding_side="left")
            width = input_ids.size(1)
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=False,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=pad_id,
            )
            texts.extend(text.strip() for text in tokenizer.batch_decode(output[:, width:], skip_special_tokens=True))
        return texts

    def _references(self, batch: Mapping[str, Any]) -> list[str]:
        return list(batch["answer"]) if "answer" in batch else self._answer_texts(batch)

    def _answer_texts(self, batch: Mapping[str, Any]) -> list[str]:
        """The labelled answer tokens decoded (special tokens skipped), as open-unlearning's zlib attack reads them;
        the batch's ``answer`` strings when no tokenizer is bound."""
        if self.tokenizer is None:
            if "answer" not in batch:
                self._require_tokenizer("decode answers for the zlib attack")
            return list(batch["answer"])
        labels = batch["labels"]
        tokens = [row[row != IGNORE_INDEX].tolist() for row in labels]
        return self.tokenizer.batch_decode(tokens, skip_special_tokens=True)

    def _require_tokenizer(self, purpose: str) -> Any:
        if self.tokenizer is None:
            raise RuntimeError(f"QASuite needs a tokenizer to {purpose}: call suite.bind(tokenizer) first")
        return self.tokenizer

    # -- compute: aggregates ----------------------------------------------------------------------------
    def _aggregate(self, tables: Mapping[str, Mapping[str, Tensor]]) -> dict[str, float]:
        aggregates: dict[str, float] = {}
        for split, table in tables.items():
            for metric in ("loss", "prob", "rouge", "extraction_strength", "exact_memorization"):
                if torch.isfinite(table[metric]).any():
                    aggregates[f"{split}/{metric}"] = nanmean(table[metric])
            if torch.isfinite(table["truth_ratio"]).any():
                aggregator = TR_AGGREGATORS[self.truth_ratio_aggregator(split)]
                aggregates[f"{split}/truth_ratio"] = aggregator(table["truth_ratio"].cpu().numpy())
        oracle = self._load_oracle()
        forget = tables.get(self.quality_split)
        if forget is not None and torch.isfinite(forget["truth_ratio"]).any():
            aggregates["forget_quality"] = oracle_forget_quality(
                forget["truth_ratio"].cpu().numpy(), oracle, self.oracle, self.quality_split
            )
        utility, missing = model_utility(aggregates)
        if missing and math.isfinite(utility):
            warnings.warn(
                f"model_utility is the harmonic mean of {9 - len(missing)} of TOFU's 9 components; missing: "
                f"{', '.join(missing)}",
                stacklevel=3,
            )
        if math.isfinite(utility):
            aggregates["model_utility"] = utility
        members, others = self.mia_splits
        if members in tables and others in tables:
            mia, targets = self.mia.aggregates(tables[members], tables[others], oracle, self.oracle == ORACLE_SELF)
            aggregates.update(mia)
            self.mia_targets.update(targets)
        return aggregates

    # -- the MIA attacks' settings and reference model (metrics/mia.py), under the suite's argument names --------
    @property
    def mia_attacks(self) -> tuple[str, ...]:
        return self.mia.attacks

    @property
    def min_k(self) -> float:
        return self.mia.min_k

    @property
    def gradnorm_p(self) -> float:
        return self.mia.gradnorm_p

    @property
    def reference_model(self) -> str | None:
        return self.mia.reference_model

    def set_reference(self, model: nn.Module) -> None:
        """Use ``model`` as the reference attack's model (instead of loading ``reference_model``)."""
        self.mia.set_reference(model)

    def reference_network(self, model: nn.Module) -> nn.Module:
        """The reference attack's model, loaded from ``reference_model`` once, on ``model``'s device and dtype."""
        return self.mia.reference_network(model)

    def _load_oracle(self) -> Any:
        if self._oracle_cache is None or self._oracle_cache[0] is not self.oracle:
            self._oracle_cache = (self.oracle, load_oracle(self.oracle))
        return self._oracle_cache[1]

    def export(self, result: EvalResult, folder: str | os.PathLike) -> list[str]:
        """open-unlearning's ``TOFU_EVAL.json`` and ``TOFU_SUMMARY.json`` of ``result`` (its schema and names)."""
        paths = write_open_unlearning(
            result, folder, normalised_splits=sorted(self.normalised), mia_splits=self.mia_splits
        )
        return [path.name for path in paths]

    def truth_ratio_aggregator(self, split: str) -> str:
        """The truth-ratio aggregate of ``split``: its ``truth_ratio`` option, else ``closer_to_1`` for a forget split
        and ``true_better`` for the others."""
        return self.tr_aggregator.get(split) or ("closer_to_1" if self.role(split) == "forget" else "true_better")

    def direction(self, name: str) -> Direction:
        """Unlearning reading of an aggregate, from the :meth:`role` of its split (never from its other options).

        Forget splits: ``loss`` higher (the answers should become unlikely), the memorisation metrics (prob, rouge,
        extraction strength, exact memorization) lower. Holdout splits (the MIA non-members, never trained on):
        ``none``, reported and not ranked. Retain and utility splits (retain, real authors, world facts): ``loss``
        lower, the rest higher. The truth ratio: ``closer_to_1`` (mean(min(TR, 1/TR)), 1 = no preference for the
        true answer) is better higher on a forget split and lower elsewhere; ``true_better`` (mean(max(0, 1 - TR)),
        high = the true answer preferred) the other way round.
        ``forget_quality`` and ``model_utility`` higher; ``privleak*`` closer to 0 from either side (``zero``:
        negative leaks, positive over-unlearns); ``mia_*_auc`` closer to the oracle's AUC of the same attack
        (``toward <x>``; 0.5, a chance-level attack, without an oracle or before the first ``compute``): an AUC well
        under it (the forget set detectable by being *less* likely than the non-members) leaks as much as one over.
        """
        split, _, metric = name.rpartition("/")
        if split:
            if metric not in ("loss", "truth_ratio", *_MEMORY_METRICS):
                raise KeyError(f"QASuite does not report a metric named '{name}'")
            role = self.role(split)
            if role == "holdout":
                return "none"
            forget = role == "forget"
            if metric == "loss":
                return "higher" if forget else "lower"
            if metric in _MEMORY_METRICS:
                return "lower" if forget else "higher"
            indifferent = self.truth_ratio_aggregator(split) == "closer_to_1"
            return "higher" if forget == indifferent else "lower"
        if name in ("forget_quality", "model_utility"):
            return "higher"
        if name.startswith("privleak"):
            return "zero"
        if name in {f"mia_{attack}_auc" for attack in MIA_ATTACKS}:
            return toward(self.mia_targets.get(name, 0.5))
        raise KeyError(f"QASuite does not report a metric named '{name}'")


def _prompts(batch: Mapping[str, Any]) -> list[Tensor]:
    """The batch's left-padded prompts without their padding."""
    ids, mask = batch["prompt_input_ids"], batch["prompt_attention_mask"].bool()
    return [row[keep] for row, keep in zip(ids, mask, strict=True)]
