import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import PreTrainedTokenizerFast

from mcu_lightning.losses import IDK_ANSWERS, IdkDPO, dpo_loss

WORDS = ["[PAD]", "[EOS]", "[UNK]", "who", "is", "x", "?", "a", "cat", "dog", "nobody", "knows", "no", "idea"]
VOCAB = {word: i for i, word in enumerate(WORDS)}
PAD, EOS = VOCAB["[PAD]"], VOCAB["[EOS]"]


@pytest.fixture
def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="[EOS]", pad_token="[PAD]", unk_token="[UNK]")


def ids(text: str) -> list[int]:
    return [VOCAB[w] for w in text.split()]


def forget_batch() -> dict[str, torch.Tensor]:
    """'who is x ?' + 'a cat [EOS]' (index 0) and 'is x ?' + 'a dog dog [EOS]' (index 3), right-padded."""
    rows = [(ids("who is x ?"), [*ids("a cat"), EOS]), (ids("is x ?"), [*ids("a dog dog"), EOS])]
    width = max(len(p) + len(a) for p, a in rows)
    input_ids = torch.full((2, width), PAD)
    labels = torch.full((2, width), -100)
    mask = torch.zeros(2, width, dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        input_ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)
        mask[i, : len(p) + len(a)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "index": torch.tensor([0, 3])}


def test_builtin_answers():
    assert len(IDK_ANSWERS) == 20 and len(set(IDK_ANSWERS)) == 20
    assert IdkDPO().idk_answers == list(IDK_ANSWERS)
    assert IdkDPO().needs_reference is True


def test_idk_batch_keeps_the_prompt_and_picks_the_answer_by_index(tokenizer):
    loss = IdkDPO(idk_answers=["nobody knows", "no idea"])
    loss.bind(tokenizer)
    idk = loss.idk_batch(forget_batch())
    # index 0 -> "nobody knows", index 3 -> 3 % 2 = 1 -> "no idea"; EOS appended; right-padded with [PAD].
    expected_ids = torch.tensor(
        [[*ids("who is x ? nobody knows"), EOS], [*ids("is x ? no idea"), EOS, PAD]],
    )
    torch.testing.assert_close(idk["input_ids"], expected_ids)
    torch.testing.assert_close(idk["attention_mask"], torch.tensor([[1] * 7, [1] * 6 + [0]]))
    expected_labels = torch.tensor(
        [[-100] * 4 + ids("nobody knows") + [EOS], [-100] * 3 + ids("no idea") + [EOS, -100]],
    )
    torch.testing.assert_close(idk["labels"], expected_labels)


def test_precomputed_idk_keys_win():
    batch = forget_batch()
    batch.update(
        idk_input_ids=batch["input_ids"] + 1, idk_attention_mask=batch["attention_mask"], idk_labels=batch["labels"]
    )
    idk = IdkDPO().idk_batch(batch)  # no tokenizer bound: the precomputed keys are used
    torch.testing.assert_close(idk["input_ids"], batch["input_ids"] + 1)


def test_without_tokenizer_or_keys_it_says_how_to_fix_it():
    with pytest.raises(RuntimeError, match=r"call `loss.bind\(tokenizer\)`"):
        IdkDPO().idk_batch(forget_batch())


def answer_logprob(table: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Bigram model by hand: sum over answer tokens of log softmax(table[previous token])[token]."""
    out = []
    for row, lab in zip(input_ids.tolist(), labels.tolist(), strict=True):
        total = 0.0
        for t in range(1, len(row)):
            if lab[t] != -100:
                scores = table[row[t - 1]].tolist()
                total += scores[row[t]] - math.log(sum(math.exp(s) for s in scores))
        out.append(total)
    return out


def test_value_matches_a_hand_computation(tokenizer):
    torch.manual_seed(0)
    policy_table, ref_table = nn.Embedding(len(WORDS), len(WORDS)), nn.Embedding(len(WORDS), len(WORDS))
    loss = IdkDPO(beta=0.5, idk_answers=["nobody knows", "no idea"], retain_loss=None, gamma=1.0)
    loss.bind(tokenizer)
    forget = forget_batch()
    out = loss(lambda b: policy_table(b["input_ids"]), {"forget": forget}, lambda b: ref_table(b["input_ids"]))

    idk = loss.idk_batch(forget)
    p, r = policy_table.weight.detach(), ref_table.weight.detach()
    lw, ll = (
        answer_logprob(p, idk["input_ids"], idk["labels"]),
        answer_logprob(p, forget["input_ids"], forget["labels"]),
    )
    rw, rl = (
        answer_logprob(r, idk["input_ids"], idk["labels"]),
        answer_logprob(r, forget["input_ids"], forget["labels"]),
    )
    terms = [math.log1p(math.exp(-0.5 * ((a - b) - (c - d)))) for a, b, c, d in zip(lw, rw, ll, rl, strict=True)]
    assert out.loss.item() == pytest.approx(sum(terms) / 2, rel=1e-5)
    margin = sum((a - b) - (c - d) for a, b, c, d in zip(lw, rw, ll, rl, strict=True)) / 2
    assert out.logs["dpo_margin"].item() == pytest.approx(margin, rel=1e-5)

    out.loss.backward()
    assert policy_table.weight.grad is not None
    assert ref_table.weight.grad is None


def test_at_the_reference_the_loss_is_ln2_and_gamma_alpha_weight(tokenizer):
    torch.manual_seed(0)
    table = nn.Embedding(len(WORDS), len(WORDS))
    loss = IdkDPO(gamma=3.0, alpha=0.5, idk_answers=["no idea"])
    loss.bind(tokenizer)
    batch = {"forget": forget_batch(), "retain": forget_batch()}
    out = loss(lambda b: table(b["input_ids"]), batch, lambda b: table(b["input_ids"]))
    assert out.logs["forget_loss"].item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert out.loss.item() == pytest.approx(3.0 * math.log(2.0) + 0.5 * out.logs["retain_loss"].item(), rel=1e-6)


def test_dpo_loss_formula_and_classifier_rejection():
    value = dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-3.0]), torch.tensor([-1.0]), beta=0.1)
    assert value.item() == pytest.approx(math.log1p(math.exp(-0.1 * ((-1 + 3) - (-2 + 1)))), rel=1e-6)
    classification = {"forget": {"inputs": torch.zeros(1, 1), "labels": torch.tensor([0])}}
    with pytest.raises(TypeError, match="causal-LM"):
        IdkDPO()(lambda b: torch.zeros(1, 2), classification, lambda b: torch.zeros(1, 2))


def test_default_gamma_is_open_unlearnings_two_over_beta(tokenizer):
    """open-unlearning's compute_dpo_loss: ``-2/beta * logsigmoid(beta * margin).mean()`` (+ alpha * retain NLL)."""
    torch.manual_seed(0)
    policy_table, ref_table = nn.Embedding(len(WORDS), len(WORDS)), nn.Embedding(len(WORDS), len(WORDS))
    forget = forget_batch()
    published = IdkDPO(beta=0.5, idk_answers=["no idea"], retain_loss=None, gamma=1.0)
    default = IdkDPO(beta=0.5, idk_answers=["no idea"], retain_loss=None)
    assert default.gamma == pytest.approx(2 / 0.5)
    outs = []
    for loss in (published, default):
        loss.bind(tokenizer)
        outs.append(
            loss(lambda b: policy_table(b["input_ids"]), {"forget": forget}, lambda b: ref_table(b["input_ids"]))
        )
    margin = outs[0].logs["dpo_margin"]  # the mean margin; per sample below
    assert torch.isfinite(margin)
    assert outs[1].loss.item() == pytest.approx(outs[0].loss.item() * 2 / 0.5, rel=1e-6)
    with pytest.raises(ValueError, match="beta must be positive"):
        IdkDPO(beta=0.0)
