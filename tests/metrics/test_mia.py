"""The Min-K%++, reference-model and gradient-norm attack scores of metrics/mia.py, by hand."""

import math

import pytest
import torch
from torch import nn

from mcu_lightning.metrics.mia import gradnorm_score, lowest_k_mean, min_k_plus_plus_score, reference_score

IGNORE = -100


def standardised(p: list[float], y: int) -> float:
    """(log p_y - E_p[log p]) / sqrt(Var_p[log p]) of one next-token distribution."""
    mu = sum(q * math.log(q) for q in p)
    var = sum(q * math.log(q) ** 2 for q in p) - mu**2
    return (math.log(p[y]) - mu) / math.sqrt(var)


def two_token_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """Sample 0: answer tokens 0 (p = [1/2, 1/4, 1/4]) and 2 (p = [1/5, 3/5, 1/5]), then the EOS (not scored).
    Sample 1: no answer tokens."""
    logits = torch.zeros(2, 4, 3)
    logits[0, 0, 0] = math.log(2.0)
    logits[0, 1, 1] = math.log(3.0)
    labels = torch.tensor([[IGNORE, 0, 2, 1], [IGNORE, IGNORE, IGNORE, IGNORE]])
    return logits, labels


@pytest.mark.parametrize("k", [0.4, 1.0])
def test_min_k_plus_plus_by_hand(k):
    logits, labels = two_token_logits()
    s = [standardised([0.5, 0.25, 0.25], 0), standardised([0.2, 0.6, 0.2], 2)]
    expected = -min(s) if k == 0.4 else -sum(s) / 2  # n_k = max(1, floor(k * 2)): 1, then 2
    score = min_k_plus_plus_score(logits, labels, k)
    assert score[0].item() == pytest.approx(expected, rel=1e-6)  # float32 logits
    assert score[1].item() == 0.0  # no answer tokens: 0, as open-unlearning


def test_lowest_k_mean_and_its_range():
    values = torch.tensor([[3.0, 1.0, 2.0, 9.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    assert lowest_k_mean(values, mask, 0.5).item() == pytest.approx(1.5)  # floor(0.5 * 4) = 2 lowest: 1, 2
    with pytest.raises(ValueError, match="min-k fraction"):
        lowest_k_mean(values, mask, 0.0)


def test_reference_score_is_the_loss_difference():
    assert reference_score(torch.tensor([2.0, 1.0]), torch.tensor([0.5, 1.5])).tolist() == [1.5, -0.5]


class ScaledBigram(nn.Module):
    """logits = scale * table[input_ids], plus a parameter the forward never reads and a frozen one it does."""

    def __init__(self, probs: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(probs.log())
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.unused = nn.Parameter(torch.ones(3))
        self.shift = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, input_ids, attention_mask=None):
        return self.scale * self.table[input_ids] + self.shift


@pytest.mark.parametrize("p", [1, 2, math.inf])
def test_gradnorm_by_hand(p):
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    model = ScaledBigram(probs)
    # one answer token (1, after token 0), then the EOS (2, not scored): loss = -log p(1 | 0)
    batch = {"input_ids": torch.tensor([[0, 1, 2]]), "attention_mask": torch.ones(1, 3), "labels": None}
    batch["labels"] = torch.tensor([[IGNORE, 1, 2]])
    row = torch.tensor([0.5, 0.25, 0.25]) - torch.tensor([0.0, 1.0, 0.0])  # d loss / d table[0] = p - e_y
    d_scale = float((torch.tensor([0.5, 0.25, 0.25]) * probs[0].log()).sum() - probs[0, 1].log())  # E_p[z] - z_y
    d_shift = 0.0  # softmax is shift-invariant: the frozen scalar gets a zero gradient, and counts
    expected = (row.norm(p=p).item() + abs(d_scale) + d_shift) / 3
    score = gradnorm_score(model, batch, p)
    assert score.item() == pytest.approx(expected, rel=1e-5)
    assert not model.shift.requires_grad and model.table.grad is None  # frozen again, no .grad written


def test_gradnorm_is_nan_without_answer_tokens_or_parameters():
    model = ScaledBigram(torch.full((3, 3), 1 / 3))
    batch = {"input_ids": torch.zeros(1, 3, dtype=torch.long), "attention_mask": torch.ones(1, 3)}
    assert math.isnan(gradnorm_score(model, {**batch, "labels": torch.full((1, 3), IGNORE)}).item())

    class Table(nn.Module):  # buffers only (an ensemble owns no parameters)
        def forward(self, input_ids, attention_mask=None):
            return torch.zeros(*input_ids.shape, 3)

    assert math.isnan(gradnorm_score(Table(), {**batch, "labels": torch.tensor([[IGNORE, 1, 2]])}).item())
    with pytest.raises(ValueError, match="p-norm"):
        gradnorm_score(model, {**batch, "labels": torch.tensor([[IGNORE, 1, 2]])}, p=3)
