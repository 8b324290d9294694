"""Small models and data for the probe tests: a tiny Llama on the fictitious facts, an MLP on digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mcu_lightning.data import ClassificationDataModule, QADataModule
from mcu_lightning.metrics import ClassificationSuite, QASuite
from mcu_lightning.models import MLP, tiny_causal_lm


@pytest.fixture(scope="module")
def qa_data() -> QADataModule:
    data = QADataModule(data="fictitious", max_length=48, eval_batch_size=64, eval_splits=["forget", "retain"])
    data.setup("test")
    return data


@pytest.fixture
def qa_suite(qa_data: QADataModule) -> QASuite:
    suite = QASuite(rouge=False)
    suite.bind(qa_data.tokenizer)
    return suite


@pytest.fixture
def tiny_lm() -> nn.Module:
    return tiny_causal_lm(hidden_size=32, intermediate_size=64, num_hidden_layers=1, seed=0).eval()


@pytest.fixture(scope="module")
def digits() -> ClassificationDataModule:
    data = ClassificationDataModule(dataset="digits", image_size=8, batch_size=32, eval_batch_size=128)
    data.setup("test")
    return data


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return MLP(in_features=64, num_classes=10, hidden=16, depth=1).eval()


@pytest.fixture
def class_suite() -> ClassificationSuite:
    return ClassificationSuite()
