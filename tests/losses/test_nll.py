import math

import pytest
import torch

from mcu_lightning.core.per_sample import batch_nll
from mcu_lightning.losses import NLL
from mcu_lightning.losses.nll import nll_shares, require_split


def lm_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform logits over V=4: every answer token costs ln 4. Sample 0 has 1 answer token, sample 1 has 3."""
    logits = torch.zeros(2, 5, 4)
    labels = torch.tensor([[-100, -100, -100, -100, 2], [-100, 1, 3, 0, -100]])
    return logits, labels


def test_nll_classification_is_cross_entropy():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])
    labels = torch.tensor([1, 1])
    out = NLL(split="retain")(lambda b: logits, {"retain": {"inputs": torch.zeros(2, 1), "labels": labels}})
    expected = (-math.log(0.75) - math.log(0.25)) / 2
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.logs["retain_loss"].item() == pytest.approx(expected, abs=1e-6)
    assert out.per_sample is None


def test_nll_on_train_logs_train_loss():
    logits, labels = lm_batch()
    out = NLL(split="train")(
        lambda b: logits, {"train": {"input_ids": torch.zeros(2, 5, dtype=torch.long), "labels": labels}}
    )
    assert out.loss.item() == pytest.approx(math.log(4.0), abs=1e-6)
    assert set(out.logs) == {"train_loss"}


def test_missing_split_names_the_loss_and_the_keys():
    with pytest.raises(KeyError, match=r"NLL needs a 'retain' sub-batch but the batch has \['forget'\]"):
        NLL()(lambda b: torch.zeros(1, 2), {"forget": {}})
    with pytest.raises(KeyError, match="GradAscent"):
        require_split({}, "forget", "GradAscent")


def test_nll_shares_are_each_samples_share_of_the_token_mean():
    logits, labels = lm_batch()
    shares = nll_shares(logits, labels)
    # S = (ln4, 3 ln4), 4 answer tokens in the batch, B = 2: share_i = 2 * S_i / 4.
    expected = torch.tensor([0.5 * math.log(4.0), 1.5 * math.log(4.0)])
    torch.testing.assert_close(shares, expected)
    assert shares.mean().item() == pytest.approx(batch_nll(logits, labels).item(), abs=1e-6)


def test_nll_shares_classification_are_per_sample_ce():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    shares = nll_shares(logits, torch.tensor([1, 0]))
    torch.testing.assert_close(shares, torch.tensor([-math.log(0.75), math.log(2.0)]))
