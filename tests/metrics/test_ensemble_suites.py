"""The suites evaluate an Ensemble as they evaluate one model: classification from averaged probabilities, and the
QA suite's scoring and generation (ROUGE) paths on the ensemble."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from test_qa_suite_llama import WORDS, tofu_like
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import Tensor, nn
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from mcu_lightning.curves import Bezier, Curve, Ensemble
from mcu_lightning.metrics import ClassificationSuite, QASuite, evaluate_suite


class Lookup(nn.Module):
    """A classifier whose class probabilities for sample ``i`` are row ``i`` of ``probs`` (inputs are indices)."""

    def __init__(self, probs: Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", probs.log())

    def forward(self, inputs: Tensor) -> Tensor:
        return self.logits[inputs]


def _batches() -> list[tuple[str, dict]]:
    batch = {"inputs": torch.arange(3), "labels": torch.zeros(3, dtype=torch.long), "index": torch.arange(3)}
    return [("forget", batch), ("test", batch)]


def _members() -> list[Lookup]:
    """Each member is right (class 0 with p = 0.9) on one sample of three and wrong (p = 0.4) on the others."""
    members = []
    for right in range(3):
        p0 = torch.full((3,), 0.4)
        p0[right] = 0.9
        members.append(Lookup(torch.stack([p0, 1 - p0], dim=1)))
    return members


def test_classification_accuracy_comes_from_averaged_probabilities():
    suite = ClassificationSuite(zrf_draws=0)
    members = _members()
    accuracies = [evaluate_suite(m, suite, _batches()).aggregates["forget/acc"] for m in members]
    assert accuracies == pytest.approx([1 / 3] * 3)  # the mean of the members' accuracies is 1/3
    result = evaluate_suite(Ensemble.from_models(members), suite, _batches())
    # averaged p(class 0) = (0.9 + 0.4 + 0.4) / 3 = 0.567 > 0.5 on every sample: the ensemble is always right
    assert result.aggregates["forget/acc"] == 1.0
    assert result.aggregates["forget/loss"] == pytest.approx(-math.log(1.7 / 3), rel=1e-6)


def test_classification_ensemble_of_one_equals_the_model():
    suite = ClassificationSuite(zrf_draws=20)
    model = _members()[0]
    alone = evaluate_suite(model, suite, _batches()).aggregates
    ensemble = evaluate_suite(Ensemble.from_models([model]), suite, _batches()).aggregates
    assert ensemble.keys() == alone.keys()
    for name, value in alone.items():
        assert ensemble[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def _llama(tokenizer, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def _qa_batches(tokenizer) -> list[tuple[str, dict]]:
    return [(split, batch) for split, batches in tofu_like(tokenizer).items() for batch in batches]


def _qa_suite(tokenizer) -> QASuite:
    suite = QASuite(max_new_tokens=4, generation_batch_size=2, oracle="self")
    suite.bind(tokenizer)
    return suite


def test_qa_ensemble_of_one_equals_the_model_including_rouge(tokenizer):
    model = _llama(tokenizer, 0)
    suite = _qa_suite(tokenizer)
    alone = evaluate_suite(model, suite, _qa_batches(tokenizer))
    ensemble = evaluate_suite(Ensemble.from_models([model]), suite, _qa_batches(tokenizer))
    assert "forget/rouge" in alone.aggregates and ensemble.aggregates.keys() == alone.aggregates.keys()
    for name, value in alone.aggregates.items():
        assert ensemble.aggregates[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert ensemble.per_sample["forget"]["rouge"] == alone.per_sample["forget"]["rouge"]


def test_qa_suite_runs_on_an_ensemble_of_curve_points(tokenizer):
    a, b = _llama(tokenizer, 0), _llama(tokenizer, 1)
    curve = Curve(copy.deepcopy(a), [a.state_dict(), b.state_dict()], shape=Bezier(3))
    ensemble = Ensemble.from_curve(curve, 3, extra=[a])
    calls = []
    generate = ensemble.generate
    ensemble.generate = lambda **kwargs: calls.append(kwargs) or generate(**kwargs)
    result = evaluate_suite(ensemble, _qa_suite(tokenizer), _qa_batches(tokenizer))
    assert calls and len(ensemble) == 4
    for name in ("forget/rouge", "retain/rouge", "forget/prob", "forget/truth_ratio", "model_utility"):
        assert math.isfinite(result.aggregates[name]), name
    assert 0.0 <= result.aggregates["forget/prob"] <= 1.0
