"""No silent truncation: the QA data module counts the rows ``max_length`` cuts and names the length that keeps all."""

import re
import warnings

import pytest

from mcu_lightning.data.qa import QATokenizer
from mcu_lightning.data.qa.datamodule import QADataModule


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("mcu_cache"))


def _module(cache, max_length):
    return QADataModule(forget_split="forget10", num_people=20, cache_dir=cache, max_length=max_length)


def _lengths(dm, split):
    """Untruncated lengths of every sequence of each row of a split, measured apart from the data module."""
    encoder = QATokenizer(dm.tokenizer, max_length=10_000)
    rows = dm.load(split)
    return [len(encoder.sequence(q, a)[0]) for q, a in zip(rows["question"], rows["answer"], strict=True)]


def test_warns_once_with_the_count_and_the_length_that_keeps_all(cache):
    dm = _module(cache, max_length=64)
    forget, retain = _lengths(dm, dm.forget_split), _lengths(dm, dm.retain_split)
    short = sorted(forget + retain)[len(forget + retain) // 2]  # cuts about half the training rows
    dm = _module(cache, max_length=short)
    with pytest.warns(UserWarning, match=r"truncated QA rows") as record:
        dm.setup("fit")
    message = str(next(w.message for w in record if "truncated QA rows" in str(w.message)))
    assert f"{sum(n > short for n in forget)} of {len(forget)} forget10," in message
    assert f"{sum(n > short for n in retain)} of {len(retain)} retain90," in message
    needed = int(re.search(r"max_length=(\d+) keeps every row whole", message).group(1))
    assert needed >= max(forget + retain)  # the eval splits (perturbed answers) may be longer still
    assert len(dm.forget_dataset.truncated_rows) == sum(n > short for n in forget)
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        dm.warn_truncation()
    assert not again  # once per module

    whole = _module(cache, max_length=needed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        whole.setup("fit")
    assert not [w for w in caught if "truncated" in str(w.message)]
    assert whole.forget_dataset.longest == max(forget)
