"""The direction of every metric each suite reports, in the unlearning reading, pinned name by name.

A suite states it once (``direction``); ``EvalResult.directions`` carries it with every result, and barriers, "beats
both endpoints" and the report's arrows read it. Forget split: loss higher, memorisation lower; holdout: none;
privleak: closer to 0 (``zero``).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from qa_fixtures import EOS, qa_batch
from torch import nn

from mcu_lightning.core.direction import toward
from mcu_lightning.curves.barrier import summarize_series
from mcu_lightning.metrics import ClassificationSuite, EvalResult, QASuite
from mcu_lightning.study.uses import best_interior

WRONG = [[4, EOS], [5, EOS]]

#: Every aggregate QASuite reports on forget/retain/holdout/real_authors/world_facts with an oracle (ROUGE aside).
QA_DIRECTIONS = {
    "forget/loss": "higher",
    "forget/prob": "lower",
    "forget/extraction_strength": "lower",
    "forget/exact_memorization": "lower",
    "forget/truth_ratio": "higher",
    "retain/loss": "lower",
    "retain/prob": "higher",
    "retain/extraction_strength": "higher",
    "retain/exact_memorization": "higher",
    "retain/truth_ratio": "higher",
    "holdout/loss": "none",
    "holdout/prob": "none",
    "holdout/extraction_strength": "none",
    "holdout/exact_memorization": "none",
    "real_authors/loss": "lower",
    "real_authors/prob": "higher",
    "real_authors/extraction_strength": "higher",
    "real_authors/exact_memorization": "higher",
    "real_authors/truth_ratio": "higher",
    "world_facts/loss": "lower",
    "world_facts/prob": "higher",
    "world_facts/extraction_strength": "higher",
    "world_facts/exact_memorization": "higher",
    "world_facts/truth_ratio": "higher",
    "forget_quality": "higher",
    "model_utility": "higher",
    "mia_loss_auc": "toward 0.5",  # without an oracle: closer to a chance-level attack
    "mia_zlib_auc": "toward 0.5",
    "mia_min_k_auc": "toward 0.5",
    "mia_min_k_plus_plus_auc": "toward 0.5",
    "privleak": "zero",
    "privleak_loss": "zero",
    "privleak_zlib": "zero",
    "privleak_min_k_plus_plus": "zero",
}

CLASSIFICATION_DIRECTIONS = {
    "forget/acc": "lower",
    "forget/loss": "higher",
    "retain/acc": "higher",
    "retain/loss": "lower",
    "test/acc": "higher",
    "test/loss": "lower",
    "mia_auc": "toward 0.5",  # the oracle's mia_auc in the test below
    "forget/acc_gap": "lower",
    "retain/acc_gap": "lower",
    "test/acc_gap": "lower",
    "mia_auc_gap": "lower",
    "zrf": "higher",  # MU-Bench's Zero Retrain Forgetting (1: the forget outputs look like a random teacher's)
}


def qa_batches() -> dict[str, dict]:
    with_options = {"paraphrased": [[2, EOS]] * 2, "perturbed": [WRONG, WRONG]}
    return {
        "forget": qa_batch([[1], [1]], [[2, EOS], [4, EOS]], [1, 0], **with_options),
        "retain": qa_batch([[1], [1]], [[2, EOS], [5, EOS]], [0, 1], **with_options),
        "holdout": qa_batch([[1], [1]], [[5, EOS], [3, EOS]], [0, 1]),
        "real_authors": qa_batch([[1]], [[2, EOS]], [0], perturbed=[WRONG]),
        "world_facts": qa_batch([[1]], [[4, EOS]], [0], perturbed=[WRONG]),
    }


def run_qa(suite: QASuite, model: nn.Module) -> EvalResult:
    suite.reset()
    for split, batch in qa_batches().items():
        suite.update(model, split, batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return suite.compute()


def test_qa_suite_states_the_direction_of_every_metric(bigram, tmp_path) -> None:
    oracle = run_qa(QASuite(rouge=False), bigram)
    oracle.to_json(tmp_path / "oracle.json")
    result = run_qa(QASuite(rouge=False, oracle=str(tmp_path / "oracle.json")), bigram)
    # with an oracle, each MIA AUC is ranked by its distance from the oracle's AUC of the same attack
    attacks = ("loss", "zlib", "min_k", "min_k_plus_plus")
    against_oracle = {f"mia_{a}_auc": toward(oracle.aggregates[f"mia_{a}_auc"]) for a in attacks}
    assert result.directions == {**QA_DIRECTIONS, **against_oracle}  # every aggregate reported, and nothing else
    assert set(result.aggregates) == set(QA_DIRECTIONS)
    assert EvalResult.from_json(tmp_path / "oracle.json").directions == oracle.directions  # saved with the result
    suite = QASuite()
    assert [suite.direction(f"{s}/rouge") for s in ("forget", "retain", "holdout")] == ["lower", "higher", "none"]
    assert suite.higher_is_better("forget/loss") and not suite.higher_is_better("forget/prob")
    with pytest.raises(KeyError, match="forget/bleu"):
        suite.direction("forget/bleu")
    # the holdout is the MIA non-member split, whatever its name
    assert QASuite(mia_splits=("forget", "unseen")).direction("unseen/prob") == "none"


def test_classification_suite_states_the_direction_of_every_metric(tmp_path) -> None:
    def batch(inputs: list[list[float]], labels: list[int]) -> dict:
        index = torch.arange(len(labels))
        return {"inputs": torch.tensor(inputs), "labels": torch.tensor(labels), "index": index}

    data = {
        "forget": batch([[2.0, 0.0], [0.0, 1.0]], [0, 0]),
        "retain": batch([[3.0, 0.0], [0.0, 3.0]], [0, 1]),
        "test": batch([[0.0, 0.0], [2.0, 0.0]], [1, 1]),
    }
    EvalResult(aggregates={"forget/acc": 0.2, "retain/acc": 1.0, "test/acc": 0.5, "mia_auc": 0.5}).to_json(
        tmp_path / "oracle.json"
    )
    suite = ClassificationSuite(oracle=tmp_path / "oracle.json")
    for split, sub in data.items():
        suite.update(nn.Identity(), split, sub)
    result = suite.compute()
    assert result.directions == CLASSIFICATION_DIRECTIONS
    assert set(result.aggregates) == set(CLASSIFICATION_DIRECTIONS)
    with pytest.raises(KeyError, match="top5"):
        suite.direction("test/top5")
    # with the original model's test accuracy the suite also reports MU-Bench's overall score
    overall = ClassificationSuite(oracle=tmp_path / "oracle.json", original_test_acc=0.9)
    for split, sub in data.items():
        overall.update(nn.Identity(), split, sub)
    assert "unlearn_overall" in overall.compute().aggregates and overall.direction("unlearn_overall") == "higher"


def test_the_figures_fallback_table_agrees_with_the_suites() -> None:
    """Figures label a metric's better direction from the suite's statement; files written without one fall back to
    ``figure_style.direction``, which must read every metric the suites report the same way."""
    from mcu_lightning.report.figure_style import direction

    for name, expected in {**QA_DIRECTIONS, **CLASSIFICATION_DIRECTIONS, "unlearn_overall": "higher"}.items():
        assert direction(name) == expected, name


def test_a_figure_label_reads_the_direction_it_is_given() -> None:
    from mcu_lightning.report.figure_style import direction_label

    names = ["forget/prob", "retain/prob"]
    labels = {"forget/prob": "forget", "retain/prob": "retain"}
    assert direction_label("prob", names, labels) == "prob (↑ better; forget ↓)"
    given = {"forget/prob": "lower", "retain/prob": "none"}  # a suite that does not rank retain
    assert direction_label("prob", names, labels, given) == "prob (↓ better)"


def test_a_split_role_not_its_truth_ratio_option_decides_the_directions(bigram) -> None:
    """``truth_ratio: true_better`` on the forget split picks the aggregate only; forget stays forget (loss higher,
    memorisation lower), and the truth ratio reads the way that aggregate means on a forget split."""
    flipped = QASuite(rouge=False, splits={"forget": {"truth_ratio": "true_better"}, "retain": {}, "holdout": {}})
    assert flipped.role("forget") == "forget"
    assert [flipped.direction(f"forget/{m}") for m in ("loss", "prob", "rouge")] == ["higher", "lower", "lower"]
    assert flipped.direction("forget/truth_ratio") == "lower"  # mean(max(0, 1 - TR)): high = still knows the answer
    assert flipped.direction("retain/truth_ratio") == "higher"
    # the role is stated once, per split, and every metric of the split follows it
    extra = QASuite(rouge=False, splits={"forget": {}, "paraphrased_forget": {"role": "forget"}})
    assert extra.direction("paraphrased_forget/prob") == "lower"
    assert extra.direction("paraphrased_forget/loss") == "higher"
    assert extra.truth_ratio_aggregator("paraphrased_forget") == "closer_to_1"
    assert QASuite(splits={"retain": {"truth_ratio": "closer_to_1"}}).direction("retain/truth_ratio") == "lower"
    with pytest.raises(ValueError, match="role of split 'forget'"):
        QASuite(splits={"forget": {"role": "forgotten"}})
    # what the suite computes carries the same directions (barriers and the report read them)
    result = run_qa(flipped, bigram)
    assert result.directions["forget/prob"] == "lower" and result.directions["forget/loss"] == "higher"


def test_an_mia_auc_is_ranked_by_its_distance_from_the_oracle_auc() -> None:
    """An AUC far under the oracle's (over-unlearning) is as bad as one far over it: with the oracle at 0.5 an
    interior AUC of 0.2 does not beat endpoints at 0.55 and 0.6, and export_best picks the interior t closest to it."""
    ts, aucs = [0.0, 0.5, 1.0], [0.55, 0.2, 0.6]
    summary = summarize_series(ts, aucs, toward(0.5))
    assert not summary.interior_beats_endpoints and summary.best_endpoint == 0.55
    assert summary.barrier_vs_max_end == pytest.approx(0.3 - 0.1)  # |0.2 - 0.5| against the worse endpoint |0.6 - 0.5|
    values = {0.0: 0.9, 0.25: 0.1, 0.5: 0.45, 0.75: 0.7, 1.0: 0.5}
    rows = [{"t": t, "mia_min_k_auc": v} for t, v in values.items()]
    assert best_interior(rows, "mia_min_k_auc", toward(0.5)) == (0.5, 0.45)
    assert best_interior(rows, "mia_min_k_auc", toward(0.72)) == (0.75, 0.7)
