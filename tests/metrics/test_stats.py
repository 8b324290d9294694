"""Per-sample statistics on hand-built logits: ES, EM, Min-K%, zlib, truth ratio, normalised probability."""

import math
import zlib

import pytest
import torch

from mcu_lightning.metrics.stats import (
    answer_mask_without_eos,
    answer_nll,
    exact_memorization,
    extraction_strength,
    min_k_score,
    normalised_probability,
    zlib_score,
)
from mcu_lightning.metrics.truth_ratio import truth_ratio

V = 10
EOS = 9
LABELS = [-100, -100, 5, 6, 7, 8, EOS]  # a two-token prompt, a four-token answer and the EOS


def greedy_logits(predicted: list[list[int]]) -> torch.Tensor:
    """Logits [B, 7, V] whose argmax at position i+1 (predicting label i+2) is predicted[b][i]."""
    logits = torch.zeros(len(predicted), len(LABELS), V)
    for b, row in enumerate(predicted):
        for i, token in enumerate(row):
            logits[b, i + 1, token] = 5.0
    return logits


def logprob_logits(target_logp: list[float]) -> torch.Tensor:
    """Logits [1, 7, V] whose log-softmax gives the answer tokens of LABELS exactly the log-probs in target_logp."""
    logits = torch.zeros(1, len(LABELS), V, dtype=torch.float64)
    for i, logp in enumerate(target_logp):
        rest = math.log((1 - math.exp(logp)) / (V - 1))
        logits[0, i + 1] = rest
        logits[0, i + 1, LABELS[i + 2]] = logp
    return logits


def test_answer_mask_drops_the_eos_position():
    labels = torch.tensor([LABELS, [-100, 4, 4, EOS, -100, -100, -100]])
    mask = answer_mask_without_eos(labels)
    assert mask.tolist() == [
        [False, True, True, True, True, False],
        [True, True, False, False, False, False],
    ]


def test_extraction_strength_and_exact_memorization_hand_values():
    labels = torch.tensor([LABELS] * 5)
    predicted = [
        [5, 6, 7, 8, EOS],  # all predicted: k = 0
        [5, 0, 7, 8, EOS],  # miss at answer position 1: matches from k = 2
        [0, 6, 7, 8, 0],  # miss at position 0 (a wrong EOS does not count): k = 1
        [5, 6, 7, 0, EOS],  # last answer token missed: k = |y| = 4
        [0, 0, 0, 0, 0],  # nothing predicted
    ]
    logits = greedy_logits(predicted)
    assert extraction_strength(logits, labels).tolist() == pytest.approx([1.0, 0.5, 0.75, 0.0, 0.0])
    assert exact_memorization(logits, labels).tolist() == pytest.approx([1.0, 0.75, 0.75, 0.75, 0.0])


def test_statistics_of_a_sample_without_answer_tokens():
    labels = torch.tensor([[-100] * 7, LABELS])
    logits = greedy_logits([[0] * 5, [5, 6, 7, 8, EOS]])
    em = exact_memorization(logits, labels)
    assert math.isnan(em[0]) and em[1] == 1.0
    assert extraction_strength(logits, labels).tolist() == [0.0, 1.0]
    nll, count = answer_nll(logits, labels)
    assert math.isnan(nll[0]) and count.tolist() == [0, 5]


@pytest.mark.parametrize(("k", "expected"), [(0.5, 3.5), (0.4, 4.0), (1.0, 2.5), (0.1, 4.0)])
def test_min_k_is_minus_the_mean_of_the_lowest_log_probs(k, expected):
    logits = logprob_logits([-1.0, -2.0, -3.0, -4.0, -6.0])  # the EOS (-6) is excluded, as in open-unlearning
    assert min_k_score(logits, torch.tensor([LABELS]), k).item() == pytest.approx(expected)


def test_min_k_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="min-k fraction"):
        min_k_score(greedy_logits([[5] * 5]), torch.tensor([LABELS]), k=0.0)


def test_answer_nll_is_the_token_mean_including_eos():
    logits = logprob_logits([-1.0, -2.0, -3.0, -4.0, -5.0])
    nll, count = answer_nll(logits, torch.tensor([LABELS]))
    assert nll.item() == pytest.approx(3.0) and count.item() == 5


def test_zlib_score_divides_the_mean_nll_by_the_compressed_length():
    texts = ["the author was born in Paris", "aaaaaaaaaaaaaaaaaaaa"]
    score = zlib_score(torch.tensor([2.0, 3.0]), texts)
    sizes = [len(zlib.compress(t.encode())) for t in texts]
    assert score.tolist() == pytest.approx([2.0 / sizes[0], 3.0 / sizes[1]])


def test_truth_ratio_is_geomean_perturbed_over_paraphrased():
    # P_para = exp(-1); perturbed NLLs 2 and 4 -> geometric mean exp(-3); TR = exp(-3) / exp(-1) = exp(-2)
    tr = truth_ratio(torch.tensor([1.0]), torch.tensor([[2.0, 4.0]]))
    assert tr.item() == pytest.approx(math.exp(-2.0))
    # a missing option (NaN) is ignored: geometric mean of one option
    tr = truth_ratio(torch.tensor([1.0]), torch.tensor([[2.0, math.nan]]))
    assert tr.item() == pytest.approx(math.exp(-1.0))


def test_normalised_probability_hand_value():
    # P(a) = 0.5, wrong options 0.25 and 0.25 -> 0.5 / (0.5 + 0.5)
    nll = torch.tensor([math.log(2.0)])
    wrong = torch.tensor([[math.log(4.0), math.log(4.0)]])
    assert normalised_probability(nll, wrong).item() == pytest.approx(0.5)
