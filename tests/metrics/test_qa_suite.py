"""QASuite on the bigram LM of qa_fixtures.py, whose probabilities give every aggregate by hand."""

import math
import warnings

import pytest
import torch
from qa_fixtures import EOS, Bigram, qa_batch
from torch import nn

from mcu_lightning.metrics import EvalResult, QASuite

NLL_2 = -(math.log(0.4) + math.log(0.5)) / 2  # answer "2 EOS" after the question
NLL_4 = -(math.log(0.2) + math.log(0.5)) / 2  # "4 EOS" or "5 EOS"
NLL_3 = -(math.log(0.1) + math.log(0.5)) / 2  # "3 EOS"
TR = math.sqrt(0.5)  # sqrt(0.2 * 0.5) / sqrt(0.4 * 0.5): perturbed over paraphrased
WRONG = [[4, EOS], [5, EOS]]


def batches() -> dict[str, dict]:
    return {
        # index 1 answers "2" (predicted greedily), index 0 answers "4" (not predicted)
        "forget": qa_batch([[1], [1]], [[2, EOS], [4, EOS]], [1, 0], [[2, EOS]] * 2, [WRONG, WRONG]),
        "holdout": qa_batch([[1], [1]], [[5, EOS], [3, EOS]], [0, 1]),
        "real_authors": qa_batch([[1]], [[2, EOS]], [0], perturbed=[WRONG]),
    }


def run(suite: QASuite, model) -> EvalResult:
    suite.reset()
    for split, batch in batches().items():
        suite.update(model, split, batch)
    return suite.compute()


def test_aggregates_by_hand(bigram):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(QASuite(rouge=False), bigram)
    messages = " ".join(str(w.message) for w in caught)
    assert "forget_quality needs the oracle's per-sample truth ratios: pass suite.oracle=" in messages
    assert "privleak needs the oracle's mia_min_k_auc" in messages
    assert "model_utility is the harmonic mean of 2 of TOFU's 9 components" in messages
    agg = result.aggregates
    assert agg["forget/loss"] == pytest.approx((NLL_2 + NLL_4) / 2)
    assert agg["forget/prob"] == pytest.approx((math.sqrt(0.2) + math.sqrt(0.1)) / 2)
    assert agg["forget/truth_ratio"] == pytest.approx(TR)  # mean(min(TR, 1/TR))
    assert agg["forget/extraction_strength"] == pytest.approx(0.5)
    assert agg["forget/exact_memorization"] == pytest.approx(0.5)
    # real authors: no paraphrase, so the true answer is the "paraphrase"; probability normalised over the options
    assert agg["real_authors/truth_ratio"] == pytest.approx(1 - TR)  # mean(max(0, 1 - TR))
    normalised = math.sqrt(2) / (math.sqrt(2) + 2)
    assert agg["real_authors/prob"] == pytest.approx(normalised)
    assert agg["model_utility"] == pytest.approx(2 / (1 / normalised + 1 / (1 - TR)))
    # MIA: forget losses (NLL_2, NLL_4) vs holdout (NLL_4, NLL_3): 3.5 of 4 pairs ordered, for all three attacks
    for attack in ("loss", "zlib", "min_k", "min_k_plus_plus"):
        assert agg[f"mia_{attack}_auc"] == pytest.approx(0.875)
    assert "mia_gradnorm_auc" not in agg and "mia_reference_auc" not in agg  # opt-in attacks
    assert math.isnan(agg["forget_quality"]) and math.isnan(agg["privleak"])
    assert "rouge" not in " ".join(agg)


def test_per_sample_values_are_ordered_by_index(bigram):
    with pytest.warns(UserWarning):
        result = run(QASuite(rouge=False), bigram)
    forget = result.per_sample["forget"]
    assert forget["index"] == [0.0, 1.0]
    assert forget["loss"] == pytest.approx([NLL_4, NLL_2])
    assert forget["truth_ratio"] == pytest.approx([TR, TR])
    assert forget["exact_memorization"] == [0.0, 1.0]
    assert "truth_ratio" not in result.per_sample["holdout"]  # no perturbed answers there
    assert "mia_min_k" not in result.per_sample["real_authors"]  # MIA scores only on the MIA splits


def test_oracle_gives_forget_quality_and_privleak(bigram, tmp_path):
    with pytest.warns(UserWarning):
        oracle = run(QASuite(rouge=False), bigram)  # the same truth ratios: KS p-value 1
    oracle.aggregates.update({"mia_loss_auc": 0.5, "mia_zlib_auc": 0.5, "mia_min_k_auc": 0.5})
    oracle.to_json(tmp_path / "oracle.json")
    with pytest.warns(UserWarning, match="model_utility"):
        result = run(QASuite(rouge=False, oracle=str(tmp_path / "oracle.json")), bigram)
    assert result.aggregates["forget_quality"] == pytest.approx(1.0)
    # leaks more than the oracle (AUC 0.875 vs 0.5): ((1 - 0.875) - 0.5) / 0.5 * 100
    assert result.aggregates["privleak"] == pytest.approx(-75.0)
    assert result.aggregates["privleak_loss"] == pytest.approx(-75.0)


def test_the_oracle_compared_with_itself_warns_of_no_oracle(bigram):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(QASuite(rouge=False, oracle="self"), bigram)
    assert not [w for w in caught if "oracle" in str(w.message)]
    assert result.aggregates["forget_quality"] == pytest.approx(1.0)  # KS of a sample against itself
    for name in ("privleak", "privleak_loss", "privleak_zlib"):
        assert result.aggregates[name] == pytest.approx(0.0)  # its own AUC: no leak relative to itself


def test_missing_oracle_file_names_the_fix(bigram, tmp_path):
    suite = QASuite(rouge=False, oracle=str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match="run `mcu test` on the oracle"):
        run(suite, bigram)


def test_json_round_trip(bigram, tmp_path):
    with pytest.warns(UserWarning):
        result = run(QASuite(rouge=False), bigram)
    path = tmp_path / "sub" / "metrics.json"
    result.to_json(path)
    loaded = EvalResult.from_json(path)
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind
    assert loaded.per_sample == result.per_sample
    assert loaded.aggregates.keys() == result.aggregates.keys()
    for name, value in result.aggregates.items():
        assert (math.isnan(value) and math.isnan(loaded.aggregates[name])) or loaded.aggregates[name] == value


def test_reset_clears_the_state(bigram):
    suite = QASuite(rouge=False, splits=["forget"])
    suite.update(bigram, "forget", batches()["forget"])
    suite.reset()
    suite.update(bigram, "forget", batches()["holdout"])
    suite.update(bigram, "holdout", batches()["holdout"])  # not in `splits`: skipped
    result = suite.compute()
    assert list(result.per_sample) == ["forget"]
    assert result.aggregates["forget/loss"] == pytest.approx((NLL_4 + NLL_3) / 2)


def test_split_options_and_errors(bigram):
    suite = QASuite(rouge=False, splits={"forget": {"truth_ratio": "true_better"}, "real_authors": {}})
    suite.update(bigram, "forget", batches()["forget"])
    with pytest.warns(UserWarning):
        assert suite.compute().aggregates["forget/truth_ratio"] == pytest.approx(1 - TR)
    with pytest.raises(ValueError, match="unknown options"):
        QASuite(splits={"forget": {"normalized": True}})
    with pytest.raises(KeyError, match="no 'perturbed_input_ids'"):
        QASuite(rouge=False).update(bigram, "world_facts", batches()["holdout"])
    with pytest.raises(TypeError, match="rouge=False"):
        QASuite().update(bigram, "forget", batches()["forget"])


def test_update_needs_an_index(bigram):
    batch = batches()["forget"]
    del batch["index"]
    with pytest.raises(KeyError, match="lacks 'index'"):
        QASuite(rouge=False).update(bigram, "forget", batch)


def test_duplicated_samples_count_once(bigram):
    # a padded DistributedSampler repeats samples; the suite keeps one row per index
    suite = QASuite(rouge=False, mia_splits=("a", "b"))
    forget = batches()["forget"]
    suite.update(bigram, "forget", forget)
    suite.update(bigram, "forget", {**forget, "index": torch.tensor([1, 1])})
    with pytest.warns(UserWarning):
        result = suite.compute()
    assert result.per_sample["forget"]["index"] == [0.0, 1.0]
    assert result.aggregates["forget/loss"] == pytest.approx((NLL_2 + NLL_4) / 2)


# -- the attacks beyond LOSS, zlib and Min-K%: Min-K%++, GradNorm and the reference model --------------------------
ALL_ATTACKS = ["loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm", "reference"]
ROW_1 = [0.05, 0.05, 0.4, 0.1, 0.2, 0.2]  # the bigram's next-token distribution after the question token


class TrainableBigram(Bigram):
    """The fixture's bigram with its log-probability table a parameter (GradNorm differentiates it)."""

    def __init__(self, bigram: Bigram) -> None:
        super().__init__(bigram.table.exp())
        table = self.table
        del self.table
        self.table = nn.Parameter(table.clone())


def standardised(y: int) -> float:
    """Min-K%++'s (log p_y - mu) / sigma after the question (one scored token per answer: n_k = 1)."""
    mu = sum(q * math.log(q) for q in ROW_1)
    var = sum(q * math.log(q) ** 2 for q in ROW_1) - mu**2
    return (math.log(ROW_1[y]) - mu) / math.sqrt(var)


def gradnorm(y: int) -> float:
    """||p - e_y||_2 of the one table row the answer token's loss reaches (the only parameter tensor)."""
    return math.sqrt(sum((q - (v == y)) ** 2 for v, q in enumerate(ROW_1)))


def full_suite(reference: nn.Module, **kwargs) -> QASuite:
    suite = QASuite(rouge=False, mia_attacks=ALL_ATTACKS, reference_model="unused: set_reference", **kwargs)
    suite.set_reference(reference)
    return suite


def test_every_attack_by_hand(bigram):
    uniform = Bigram(torch.full((6, 6), 1 / 6))
    with pytest.warns(UserWarning):
        result = run(full_suite(uniform), TrainableBigram(bigram))
    forget, holdout = result.per_sample["forget"], result.per_sample["holdout"]  # index order: "4", "2" / "5", "3"
    assert forget["mia_min_k_plus_plus"] == pytest.approx([-standardised(4), -standardised(2)])
    assert holdout["mia_min_k_plus_plus"] == pytest.approx([-standardised(5), -standardised(3)])
    assert forget["mia_gradnorm"] == pytest.approx([gradnorm(4), gradnorm(2)])
    assert holdout["mia_gradnorm"] == pytest.approx([gradnorm(5), gradnorm(3)])
    assert forget["mia_reference"] == pytest.approx([NLL_4 - math.log(6), NLL_2 - math.log(6)])
    # every score orders the four answers as the loss does: 3.5 of 4 (forget, holdout) pairs
    for attack in ALL_ATTACKS:
        assert result.aggregates[f"mia_{attack}_auc"] == pytest.approx(0.875), attack


def test_the_reference_attack_against_the_model_itself_cannot_tell(bigram):
    with pytest.warns(UserWarning):
        result = run(full_suite(bigram), bigram)
    assert result.aggregates["mia_reference_auc"] == pytest.approx(0.5)  # every score is 0
    assert math.isnan(result.aggregates["mia_gradnorm_auc"])  # the fixture's bigram has no parameters


def test_privleak_of_every_attack_against_the_oracle(bigram, tmp_path):
    oracle = EvalResult(aggregates={f"mia_{attack}_auc": 0.5 for attack in ALL_ATTACKS})
    oracle.to_json(tmp_path / "oracle.json")
    suite = full_suite(Bigram(torch.full((6, 6), 1 / 6)), oracle=str(tmp_path / "oracle.json"))
    with pytest.warns(UserWarning):  # the oracle file has no truth ratios, the data no utility splits
        result = run(suite, TrainableBigram(bigram))
    assert result.aggregates["privleak"] == pytest.approx(-75.0)  # Min-K%, as open-unlearning's TOFU privleak
    for attack in ("loss", "zlib", "min_k_plus_plus", "gradnorm", "reference"):
        assert result.aggregates[f"privleak_{attack}"] == pytest.approx(-75.0), attack
    for name in ("mia_min_k_plus_plus_auc", "mia_gradnorm_auc", "mia_reference_auc"):
        assert suite.direction(name) == suite.direction("mia_min_k_auc")
    assert suite.direction("privleak_gradnorm") == "zero"


def test_attack_options_are_checked():
    with pytest.raises(ValueError, match="unknown MIA attacks"):
        QASuite(mia_attacks=["loss", "recall"])
    with pytest.raises(ValueError, match="reference_model"):
        QASuite(mia_attacks=["reference"])
    with pytest.raises(ValueError, match="reference_model"):
        QASuite(reference_model="runs/oracle/model")
    with pytest.raises(ValueError, match="gradnorm_p"):
        QASuite(gradnorm_p=3)
    suite = QASuite(rouge=False, mia_attacks=["reference"], reference_model="oracle")
    with pytest.raises(ValueError, match="names a study node"):
        suite.reference_network(nn.Linear(1, 1))
