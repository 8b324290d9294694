"""ROUGE-L recall (Lin, 2004) of generations against reference answers, as TOFU reports it."""

from __future__ import annotations

from collections.abc import Sequence

from rouge_score import rouge_scorer

from mcu_lightning.core.errors import InputError


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L recall (Lin, 2004) of each generation against its reference answer, Porter-stemmed, as TOFU reports
    it (open-unlearning ``rougeL_recall``): LCS(prediction, reference) / |reference| in words.
    """
    if len(predictions) != len(references):
        raise InputError(f"ROUGE got {len(predictions)} generations for {len(references)} answers")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references, strict=True)]


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> list[dict[str, float]]:
    """Per generation, the three ROUGE numbers open-unlearning's ``eval_text_similarity`` records (Porter-stemmed):
    ``rouge1_recall``, ``rougeL_f1`` and ``rougeL_recall`` (the last is :func:`rouge_l_recall`)."""
    if len(predictions) != len(references):
        raise InputError(f"ROUGE got {len(predictions)} generations for {len(references)} answers")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    rows = []
    for pred, ref in zip(predictions, references, strict=True):
        score = scorer.score(ref, pred)
        rows.append(
            {
                "rouge1_recall": score["rouge1"].recall,
                "rougeL_f1": score["rougeL"].fmeasure,
                "rougeL_recall": score["rougeL"].recall,
            }
        )
    return rows
