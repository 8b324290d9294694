import math

import pytest
import torch
from torch import nn

from mcu_lightning.core.forward import as_policy
from mcu_lightning.losses import RandomLabel
from mcu_lightning.losses.random_label import join_prompt_answer, split_prompt_answer


def test_shift_mode_targets_the_next_class():
    loss = RandomLabel(retain_loss=None)
    torch.testing.assert_close(loss.wrong_labels(torch.tensor([0, 1, 2]), 3), torch.tensor([1, 2, 0]))
    # Logits (ln 3, 0, 0): p = (3/5, 1/5, 1/5). Labels 0 and 2 -> targets 1 and 0.
    logits = torch.tensor([[math.log(3.0), 0.0, 0.0]]).expand(2, 3)
    batch = {"forget": {"inputs": torch.zeros(2, 1), "labels": torch.tensor([0, 2])}}
    out = loss(lambda b: logits, batch)
    expected = (-math.log(0.2) - math.log(0.6)) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(out.per_sample, torch.tensor([-math.log(0.2), -math.log(0.6)]))


def test_random_mode_never_keeps_the_label_and_is_seeded():
    labels = torch.arange(5).repeat(40)
    first = RandomLabel(mode="random", seed=3).wrong_labels(labels, 5)
    again = RandomLabel(mode="random", seed=3).wrong_labels(labels, 5)
    assert (first != labels).all()
    torch.testing.assert_close(first, again)
    assert set(first.tolist()) == set(range(5))  # every class is hit over 200 draws
    assert not torch.equal(first, RandomLabel(mode="random", seed=4).wrong_labels(labels, 5))


def test_num_classes_and_retain_weighting():
    loss = RandomLabel(alpha=0.5, num_classes=2, gamma=2.0)
    batch = {
        "forget": {"inputs": torch.zeros(1, 1), "labels": torch.tensor([1])},
        "retain": {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])},
    }
    out = loss(lambda b: torch.tensor([[math.log(3.0), 0.0]]), batch)  # p = (3/4, 1/4); target 0
    assert out.loss.item() == pytest.approx(2.0 * -math.log(0.75) + 0.5 * -math.log(0.75), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 classes"):
        loss.wrong_labels(torch.tensor([0]), 1)


def qa(rows: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    width = max(len(p) + len(a) for p, a in rows) + 1  # one padding column
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full_like(input_ids, -100)
    mask = torch.zeros_like(input_ids)
    for i, (p, a) in enumerate(rows):
        input_ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)
        mask[i, : len(p) + len(a)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def test_split_and_join_round_trip():
    batch = qa([([5, 6], [7, 8, 1]), ([9], [10, 1])])
    pairs = split_prompt_answer(batch)
    assert [(p.tolist(), a.tolist()) for p, a in pairs] == [([5, 6], [7, 8, 1]), ([9], [10, 1])]
    joined = join_prompt_answer([p for p, _ in pairs], [a for _, a in pairs])
    torch.testing.assert_close(joined["input_ids"], batch["input_ids"][:, :5])
    torch.testing.assert_close(joined["labels"], batch["labels"][:, :5])
    torch.testing.assert_close(joined["attention_mask"], batch["attention_mask"][:, :5])


def test_qa_answers_are_rolled_in_the_batch():
    forget = qa([([5, 6], [7, 1]), ([9], [10, 11, 1]), ([12, 13, 14], [15, 1])])
    target = RandomLabel().relabelled_answers({"forget": forget}, forget)
    # Sample i keeps its prompt and gets sample (i+1) mod 3's answer.
    expected_ids = torch.tensor([[5, 6, 10, 11, 1], [9, 15, 1, 0, 0], [12, 13, 14, 7, 1]])
    expected_labels = torch.tensor([[-100, -100, 10, 11, 1], [-100, 15, 1, -100, -100], [-100, -100, -100, 7, 1]])
    torch.testing.assert_close(target["input_ids"], expected_ids)
    torch.testing.assert_close(target["labels"], expected_labels)
    torch.testing.assert_close(target["attention_mask"], (expected_ids != 0).long())


def test_single_sample_batches_take_the_retain_answer_or_fail_clearly():
    forget = qa([([5, 6], [7, 1])])
    retain = qa([([2], [3, 4, 1])])
    target = RandomLabel().relabelled_answers({"forget": forget, "retain": retain}, forget)
    torch.testing.assert_close(target["input_ids"], torch.tensor([[5, 6, 3, 4, 1]]))
    retain_mode = RandomLabel(answer_source="retain").relabelled_answers({"forget": forget, "retain": retain}, forget)
    torch.testing.assert_close(retain_mode["input_ids"], target["input_ids"])
    with pytest.raises(ValueError, match="turn the retain data on"):
        RandomLabel().relabelled_answers({"forget": forget}, forget)


def test_qa_loss_is_the_nll_of_the_rolled_answers():
    torch.manual_seed(0)
    table = nn.Embedding(16, 16)
    forget = qa([([5, 6], [7, 1]), ([9], [10, 11, 1])])
    loss = RandomLabel(retain_loss=None)
    out = loss(lambda b: table(b["input_ids"]), {"forget": forget})
    # Rolled: [5 6 | 10 11 1] and [9 | 7 1]; bigram log-probs by hand, token mean over 5 answer tokens.
    logp = torch.log_softmax(table.weight.detach(), dim=-1)
    transitions = [(6, 10), (10, 11), (11, 1), (9, 7), (7, 1)]
    expected = -sum(logp[a, b].item() for a, b in transitions) / 5
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


def test_kl_retain_needs_reference_without_gradient():
    assert RandomLabel().needs_reference is False
    loss = RandomLabel(retain_loss="kl")
    assert loss.needs_reference is True
    torch.manual_seed(0)
    model, ref = nn.Linear(3, 4), nn.Linear(3, 4)
    batch = {
        "forget": {"inputs": torch.randn(2, 3), "labels": torch.tensor([0, 3])},
        "retain": {"inputs": torch.randn(2, 3), "labels": torch.tensor([1, 2])},
    }
    loss(as_policy(model), batch, as_policy(ref)).loss.backward()
    assert model.weight.grad is not None and all(p.grad is None for p in ref.parameters())


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="mode must be"):
        RandomLabel(mode="flip")
    with pytest.raises(ValueError, match="answer_source must be"):
        RandomLabel(answer_source="holdout")
